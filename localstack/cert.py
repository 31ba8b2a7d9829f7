"""Writes a self-signed certificate for LocalStack's gateway (key and certificate in one
PEM file, as CUSTOM_SSL_CERT_PATH expects). LocalStack 2026.3 makes its own with a
pyOpenSSL call that current pyOpenSSL no longer has, and cannot download one offline."""

import datetime
import ipaddress
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(days=1))
    .not_valid_after(now + datetime.timedelta(days=730))
    .add_extension(
        x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.DNSName("localhost.localstack.cloud"),
             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ),
        critical=False,
    )
    .sign(key, hashes.SHA256())
)
with open(sys.argv[1], "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))
    f.write(cert.public_bytes(serialization.Encoding.PEM))
