"""A small JSON API: the application examples/pyapp runs in its container.

It uses only what Debian's python3-minimal ships (socket and threading; no
http.server or json), so the base image stays small.

GET  /health        {"ok": true}   (wharf's ready_on probes it)
GET  /notes         every note, the host name, the user id and APP_MODE
POST /notes         adds the request body as a note
"""
import os
import socket
import threading

notes = []
lock = threading.Lock()


def quote(s):
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def route(method, path, body):
    if method == "GET" and path == "/health":
        return 200, '{"ok": true}'
    if path == "/notes" and method == "GET":
        with lock:
            listed = ", ".join(quote(n) for n in notes)
        return 200, '{"notes": [%s], "host": %s, "user": %d, "mode": %s}' % (
            listed, quote(socket.gethostname()), os.getuid(), quote(os.environ.get("APP_MODE", "")))
    if path == "/notes" and method == "POST":
        with lock:
            notes.append(body.decode("utf-8", "replace"))
            return 201, '{"count": %d}' % len(notes)
    return 404, '{"error": %s}' % quote("not found: " + path)


def serve(conn):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        status, text = route(method, path.split("?")[0], body[:length])
        payload = text.encode()
        reason = {200: "OK", 201: "Created", 404: "Not Found"}[status]
        conn.sendall(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "Connection: close\r\n\r\n" % (status, reason, len(payload))).encode() + payload)


def main():
    port = int(os.environ.get("PORT", "8000"))
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("", port))
    srv.listen(64)
    print("pyapp listening on :%d" % port, flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
