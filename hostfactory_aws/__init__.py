"""hostfactory-aws: the AWS provider plugin for IBM Spectrum Symphony HostFactory and LSF."""

__version__ = "0.1.0"
