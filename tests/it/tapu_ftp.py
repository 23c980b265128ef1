"""Drives stowage's tapu-backups FTP server with Python's own ftplib, as a real FTP client.

Usage: python3 tapu_ftp.py '<json>' where the JSON gives host, port, user, password and a
list of operations; prints one JSON result per operation ({"ok": bool, "reply": text}).
"""
import ftplib
import json
import socket
import ssl
import struct
import sys


def run(ftp, op):
    kind = op["op"]
    ftp.set_pasv(not op.get("active", False))
    if kind == "put":
        with open(op["path"], "rb") as f:
            try:
                return ftp.storbinary("STOR " + op["name"], f, blocksize=1 << 20)
            except OSError:
                # The data connection ended early on the client's side: the server refused
                # the file and closed it before all was sent, or (FTPS) closed it without
                # a TLS close_notify after storing everything. Its reply says which
                # (getresp raises on a 4xx or 5xx).
                return ftp.getresp()
    if kind == "get":
        with open(op["path"], "wb") as f:
            return ftp.retrbinary("RETR " + op["name"], f.write, rest=op.get("rest"))
    if kind == "nlst":
        return json.dumps(ftp.nlst())
    if kind == "list":
        lines = []
        ftp.retrlines("LIST", lines.append)
        return json.dumps(lines)
    if kind == "mlsd":
        return json.dumps([name for name, _ in ftp.mlsd()])
    if kind == "size":
        return str(ftp.size(op["name"]))
    if kind in ("cmd", "mdtm", "dele", "mkd", "site"):
        return ftp.sendcmd(op["line"])
    if kind == "rename":
        return ftp.rename(op["from"], op["to"])
    if kind == "cut":
        # Sends the first `bytes` of the file, then ends the data connection: "rst" resets
        # it (as a killed client's kernel may), "fin" closes it as if the file had ended.
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("STOR " + op["name"])
        with open(op["path"], "rb") as f:
            conn.sendall(f.read(op["bytes"]))
        if op["how"] == "rst":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        return ftp.voidresp()
    raise ValueError("unknown op " + kind)


def main():
    args = json.loads(sys.argv[1])
    results = []
    if args.get("tls"):
        # Explicit FTPS: AUTH TLS on login, then a private data channel. The test's
        # certificate is self-signed.
        ftp = ftplib.FTP_TLS(context=ssl._create_unverified_context())
    else:
        ftp = ftplib.FTP()
    ftp.connect(args["host"], args["port"], timeout=120)
    try:
        ftp.login(args["user"], args["password"])
        if args.get("tls"):
            ftp.prot_p()
    except ftplib.all_errors as e:
        print(json.dumps([{"ok": False, "reply": str(e)}]))
        return
    for op in args["ops"]:
        try:
            results.append({"ok": True, "reply": run(ftp, op)})
        except ftplib.all_errors as e:
            results.append({"ok": False, "reply": str(e)})
    try:
        ftp.quit()
    except ftplib.all_errors:
        pass
    print(json.dumps(results))


main()
