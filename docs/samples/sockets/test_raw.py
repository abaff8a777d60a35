import socket

from conftest import ADDRESS, KEPT


def test_closed():
    with socket.create_connection(ADDRESS):
        pass


def test_kept():
    KEPT.append(socket.create_connection(ADDRESS))  # never closed
