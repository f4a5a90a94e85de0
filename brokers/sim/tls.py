"""Certificates for the simulator's TLS mode, made when it starts (real brokers are https).

A throwaway certificate authority and a server certificate it signs for 127.0.0.1 and
localhost, written to one directory: `ca.pem` (what clients trust: COPYTRADE_BROKER_CA_FILE),
`cert.pem` and `key.pem` (what the simulator serves). Two certificates, not one self-signed
leaf: rustls (the workers' HTTP client) refuses a CA certificate presented as a server's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _authority(
    ca_key: ec.EllipticCurvePrivateKey, valid: tuple[dt.datetime, dt.datetime]
) -> x509.Certificate:
    """A self-signed CA that may sign server certificates only."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name("copytrade simulator CA"))
        .issuer_name(_name("copytrade simulator CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )


def make_certificates(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Path:
    """Write ca.pem, cert.pem and key.pem into `directory`; returns the CA file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    valid = (now - dt.timedelta(hours=1), now + dt.timedelta(days=7))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _authority(ca_key, valid)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(pem))
    ca_file = directory / "ca.pem"
    # Written last and whole (rename): a client that sees ca.pem sees the key pair too.
    partial = directory / "ca.pem.partial"
    partial.write_bytes(ca.public_bytes(pem))
    partial.replace(ca_file)
    return ca_file
