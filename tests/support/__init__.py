"""What every suite and bench/ share: no test lives here.

- server.py: the sandbox server (moto on 127.0.0.1 behind fault injection and the call
  counter) and small look-ups over any EC2 client (AMI, default subnets, instances, tags).
- faults.py: fault injection on the wire (errors before or after moto does the call,
  refused actions).
- hostfactory.py: a HostFactory (or LSF) installation in a directory, and the verbs
  called as HostFactory calls them (scripts as processes, or in this process).
- ec2_events.py: what EC2 does behind HostFactory's back (Spot notices, reclaims, aging),
  done to moto's backend.
- fixtures.py: ``moto_server`` and ``hf``, registered for every suite by tests/conftest.py.
"""
