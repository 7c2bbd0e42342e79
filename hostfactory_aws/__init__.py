"""hostfactory-aws: the AWS provider plugin for IBM Spectrum Symphony HostFactory and LSF."""

import logging as _logging

__version__ = "0.1.0"

# Logs go to the plugin log only: without its handler (an unwritable log dir), a record must
# not fall through to logging's last resort, which writes to stderr.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
