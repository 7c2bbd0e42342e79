"""AWS: session and error table, instance sweep, Spot notices, instance types, launch
specs, and apis/ with one module per provisioning API. Never builds HostFactory JSON."""
