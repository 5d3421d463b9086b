"""A throwaway certificate authority for HTTPS tests on loopback, made with the openssl CLI."""

import base64
import hashlib
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nginx_stack import require_program

# Every name the embed tests serve: the ad server and two publisher sites (mapped to 127.0.0.1 in Chromium).
HOSTS = ("localhost", "ads.test", "publisher-a.test", "publisher-b.test")


@dataclass(frozen=True)
class TestCA:
    """A CA certificate and one server certificate it signed for HOSTS and 127.0.0.1."""

    ca_cert: Path
    cert: Path
    key: Path

    def spki_hash(self) -> str:
        """base64 SHA-256 of the CA's public key, as Chromium's --ignore-certificate-errors-spki-list takes it."""
        der = _openssl("x509", "-in", self.ca_cert, "-pubkey", "-noout")
        spki = _openssl_bytes(["pkey", "-pubin", "-outform", "DER"], der)
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only this CA (for Python clients of the test servers)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def make_ca(work: Path, hosts=HOSTS) -> TestCA:
    """A new CA in `work` and a certificate for `hosts` and 127.0.0.1 signed by it (EC P-256, valid 2 days)."""
    require_program("openssl")
    work.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = work / "ca.key", work / "ca.pem"
    key, csr, cert = work / "server.key", work / "server.csr", work / "server.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert, "-days", "2",
             "-subj", "/CN=BannerService test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={hosts[0]}")
    extensions = work / "server.ext"
    names = ",".join([f"DNS:{h}" for h in hosts] + ["IP:127.0.0.1"])
    extensions.write_text(f"subjectAltName={names}\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", extensions)
    # A full chain, so clients that trust the CA need nothing else from the server.
    cert.write_text(cert.read_text() + ca_cert.read_text())
    return TestCA(ca_cert=ca_cert, cert=cert, key=key)


def _openssl(*args) -> bytes:
    return _openssl_bytes([str(a) for a in args], None)


def _openssl_bytes(args, stdin) -> bytes:
    result = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    if result.returncode:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout
