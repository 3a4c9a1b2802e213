"""A TCP relay that adds a fixed one-way delay in each direction (this kernel has no netem).

``python _relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_S``: prints ``ready`` on
stdout once it listens, then forwards every connection to the target, holding each chunk of
bytes ``DELAY_S`` seconds (on the monotonic clock) before passing it on, order kept. It runs until
killed. Test and benchmark helper only: it listens inside a network namespace the test made.
"""

from __future__ import annotations

import queue
import socket
import sys
import threading
import time


def _pump(source: socket.socket, target: socket.socket, delay: float) -> None:
    held: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def deliver() -> None:
        while True:
            due, chunk = held.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not chunk:
                try:
                    target.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                target.sendall(chunk)
            except OSError:
                return

    threading.Thread(target=deliver, daemon=True).start()
    while True:
        try:
            chunk = source.recv(65536)
        except OSError:
            chunk = b""
        held.put((time.monotonic() + delay, chunk))
        if not chunk:
            return


def _serve(conn: socket.socket, target: tuple[str, int], delay: float) -> None:
    upstream = socket.create_connection(target)
    for s in (conn, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=_pump, args=(conn, upstream, delay), daemon=True).start()
    threading.Thread(target=_pump, args=(upstream, conn, delay), daemon=True).start()


def main() -> None:
    host, port, target_host, target_port, delay = sys.argv[1:6]
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, int(port)))
    server.listen(256)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(
            target=_serve, args=(conn, (target_host, int(target_port)), float(delay)), daemon=True
        ).start()


if __name__ == "__main__":
    main()
