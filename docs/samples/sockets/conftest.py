"""A TCP server on 127.0.0.1 that accepts connections and never answers.

The kernel completes each handshake into the listening socket's backlog, so a client's
socket is ESTABLISHED without a thread to accept it.
"""

import socket

SERVER = socket.create_server(("127.0.0.1", 0), backlog=16)
ADDRESS = SERVER.getsockname()
KEPT = []  # the sockets the leaky test keeps open after it ends
