"""Throwaway TLS material for a local broker, made with the JDK's ``keytool`` (no network).

A self-signed CA, a broker key pair signed by it (SAN ``IP:127.0.0.1``,
``DNS:localhost`` so Python's hostname check passes on loopback), a PKCS12
keystore and truststore for the broker, and the CA as PEM for Python clients
(``RECSTREAM_SECURITY__SSL_CAFILE``). Valid for a few days: test and dev only.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from recstream.errors import ConfigError, KafkaError
from recstream.localkafka import TlsMaterial


def _keytool(*args: str) -> None:
    tool = shutil.which("keytool")
    if tool is None:
        raise ConfigError("`keytool` is not on PATH: install a Java 17+ JDK/JRE")
    proc = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # keytool echoes no passwords; its message says which step failed.
        raise KafkaError(f"keytool {args[0]} failed: {proc.stdout}{proc.stderr}".strip())


def make_tls_material(folder: Path, days: int = 3) -> TlsMaterial:
    """Create (or reuse) a CA and a broker keystore under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pw_file = folder / "store.password"
    material = TlsMaterial(
        keystore=folder / "broker.p12",
        truststore=folder / "truststore.p12",
        store_password=pw_file.read_text() if pw_file.is_file() else secrets.token_hex(16),
        ca_pem=folder / "ca.pem",
    )
    if material.keystore.is_file() and material.truststore.is_file() and material.ca_pem.is_file():
        return material
    pw = material.store_password
    ca, csr, signed = folder / "ca.p12", folder / "broker.csr", folder / "broker.pem"
    for stale in (ca, csr, signed, material.keystore, material.truststore, material.ca_pem):
        stale.unlink(missing_ok=True)
    common = ["-storetype", "PKCS12", "-storepass", pw, "-keypass", pw]
    _keytool("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048",
             "-dname", "CN=recstream-local-ca", "-ext", "bc:c", "-validity", str(days),
             "-keystore", str(ca), *common)  # fmt: skip
    _keytool("-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca), "-storepass", pw,
             "-file", str(material.ca_pem))  # fmt: skip
    _keytool("-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
             "-dname", "CN=localhost", "-validity", str(days),
             "-keystore", str(material.keystore), *common)  # fmt: skip
    _keytool("-certreq", "-alias", "broker", "-keystore", str(material.keystore),
             "-storepass", pw, "-file", str(csr))  # fmt: skip
    _keytool("-gencert", "-alias", "ca", "-keystore", str(ca), "-storepass", pw, "-rfc",
             "-infile", str(csr), "-outfile", str(signed), "-validity", str(days),
             "-ext", "SAN=IP:127.0.0.1,DNS:localhost")  # fmt: skip
    for alias, cert in (("ca", material.ca_pem), ("broker", signed)):
        _keytool("-importcert", "-noprompt", "-alias", alias, "-file", str(cert),
                 "-keystore", str(material.keystore), *common)  # fmt: skip
    _keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(material.ca_pem),
             "-keystore", str(material.truststore), *common)  # fmt: skip
    pw_file.write_text(pw)
    pw_file.chmod(0o600)
    return material
