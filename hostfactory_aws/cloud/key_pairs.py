"""IBM's AWS_KEY_FILE: the directory of ``<keyName>.pem`` files for the templates' key pairs.

As IBM's LSF awsv2 plugin does before a launch: a key pair EC2 does not know is imported
from ``<dir>/<keyName>.pem`` (its public half, by ssh-keygen), or, with no such file,
created in EC2 and its private key saved there (mode 0400). A key pair EC2 knows is used
as is. Failures are logged, never fatal here: EC2 itself then says what is wrong.
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Any

from hostfactory_aws.errors import AwsError

log = logging.getLogger(__name__)


def ensure_key_pair(aws: Any, key_name: str, key_dir: str) -> None:
    try:
        aws.call("ec2", "DescribeKeyPairs", KeyNames=[key_name])
        return
    except AwsError as exc:
        if exc.code != "InvalidKeyPair.NotFound":
            log.warning("AWS_KEY_FILE: cannot check key pair %s: %s", key_name, exc)
            return
    pem = os.path.join(key_dir, f"{key_name}.pem")
    try:
        if os.path.isfile(pem):
            public = _public_key(pem)
            aws.call("ec2", "ImportKeyPair", KeyName=key_name,
                     PublicKeyMaterial=public.encode("utf-8"))
            log.info("AWS_KEY_FILE: imported key pair %s from %s", key_name, pem)
            return
        material = aws.call("ec2", "CreateKeyPair", KeyName=key_name)["KeyMaterial"]
        os.makedirs(key_dir, exist_ok=True)
        fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(material)
        log.info("AWS_KEY_FILE: created key pair %s; private key in %s", key_name, pem)
    except (AwsError, OSError, ValueError) as exc:
        log.warning("AWS_KEY_FILE: key pair %s (%s): %s", key_name, pem, exc)


def _public_key(pem: str) -> str:
    try:
        proc = subprocess.run(["ssh-keygen", "-y", "-f", pem], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"ssh-keygen cannot read it: {exc}") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ValueError(f"ssh-keygen cannot read it: {proc.stderr.strip()}")
    return proc.stdout.strip()
