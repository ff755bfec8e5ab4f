"""Peers for the pass-through test, inside a network namespace.

  passthrough.py serve ADDRESS CERT KEY
      VPC Lattice stand-ins on ADDRESS: a TLS passthrough service on 8443 that answers
      "tls SNI" (the name the client asked for, as the service terminating TLS sees it), a
      client-first protocol on 7000 that answers "echo LINE", and a server-first one on 7001
      that greets with "greeting". Prints "ready" on standard error once it listens.
  passthrough.py tls ADDRESS PORT SNI CAFILE
      Connects over TLS, verifying the server against CAFILE for SNI; prints its first line.
  passthrough.py echo ADDRESS PORT
      Sends "hello" and prints the answer.
  passthrough.py url URL
      Prints the body of an HTTP GET, or the error.
"""

import socket
import ssl
import sys
import threading
import urllib.request


def serve(address, cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    names = {}

    def remember(connection, name, _context):
        names[id(connection)] = name

    context.sni_callback = remember

    def listen(port, handle):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(16)

        def loop():
            while True:
                connection, _ = sock.accept()
                threading.Thread(target=guarded, args=(handle, connection), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()

    def guarded(handle, connection):
        try:
            with connection:
                handle(connection)
        except OSError:
            pass

    def tls(connection):
        with context.wrap_socket(connection, server_side=True) as secure:
            secure.sendall(f"tls {names.get(id(secure), '-')}\n".encode())

    def echo(connection):
        line = connection.makefile().readline().strip()
        connection.sendall(f"echo {line}\n".encode())

    def greet(connection):
        connection.sendall(b"greeting\n")

    listen(8443, tls)
    listen(7000, echo)
    listen(7001, greet)
    print("ready", file=sys.stderr, flush=True)
    threading.Event().wait()


def main():
    mode, rest = sys.argv[1], sys.argv[2:]
    try:
        if mode == "serve":
            serve(*rest)
        elif mode == "tls":
            address, port, sni, cafile = rest
            context = ssl.create_default_context(cafile=cafile)
            with socket.create_connection((address, int(port)), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname=sni) as secure:
                    print(secure.makefile().readline().strip())
        elif mode == "echo":
            address, port = rest
            with socket.create_connection((address, int(port)), timeout=5) as connection:
                connection.sendall(b"hello\n")
                print(connection.makefile().readline().strip())
        elif mode == "url":
            with urllib.request.urlopen(rest[0], timeout=2) as answer:
                print(answer.read().decode().strip())
    except (OSError, ValueError) as error:
        print(f"error: {error}")


main()
