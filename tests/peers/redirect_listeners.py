"""Two kinds of listener for the redirect test, inside a network namespace: the sidecar's
egress port on every address, and "VPC Lattice itself" on given link-local addresses. Each
answers a connection with its own name, so the client can tell where it landed. Prints
"ready" on standard error once every socket listens."""

import argparse
import selectors
import socket
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--egress-port", type=int, required=True)
parser.add_argument("--lattice", action="append", default=[], help="ADDRESS:PORT or [ADDRESS]:PORT")
args = parser.parse_args()


def listen(family, address, port, name):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((address, port))
    sock.listen(16)
    return sock, name


sockets = [
    listen(socket.AF_INET, "0.0.0.0", args.egress_port, b"egress"),
    listen(socket.AF_INET6, "::", args.egress_port, b"egress"),
]
for endpoint in args.lattice:
    address, port = endpoint.rsplit(":", 1)
    family = socket.AF_INET6 if address.startswith("[") else socket.AF_INET
    sockets.append(listen(family, address.strip("[]"), int(port), b"lattice"))

selector = selectors.DefaultSelector()
for sock, name in sockets:
    selector.register(sock, selectors.EVENT_READ, name)
print("ready", file=sys.stderr, flush=True)
while True:
    for key, _ in selector.select():
        connection, _ = key.fileobj.accept()
        connection.sendall(key.data + b"\n")
        connection.close()
