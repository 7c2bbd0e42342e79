"""One module per HostFactory verb, each ``run(ctx, data) -> answer``."""
