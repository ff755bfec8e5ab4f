"""Connects to ADDRESS PORT and prints the first line the listener sends, or the error."""

import socket
import sys

address, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((address, port), timeout=5) as connection:
        print(connection.makefile().readline().strip())
except OSError as error:
    print(f"error: {error}")
