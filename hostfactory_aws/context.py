"""Where things are: provider name, conf/work/log dirs, config and templates files.

Symphony's HF_* variables first, then LSF's PRO_* ones, then the plugin's own conf/ with
work/ and log/ beside it. Never the current directory: HostFactory does not promise one.
"""

from __future__ import annotations

import os
from typing import Any

from hostfactory_aws.errors import ConfigError

PLUGIN_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Context:
    """Where one call's files are; config, templates and AWS access are made once, on use.

    A plain class rather than a dataclass: importing dataclasses (and inspect with it)
    costs ~10 ms, a tenth of a getAvailableTemplates call.
    """

    def __init__(self, provider: str, conf_dir: str, work_dir: str, log_dir: str,
                 config_path: str, templates_path: str, mode: str,
                 why: dict[str, str] | None = None, _config: dict[str, Any] | None = None,
                 _templates: list[dict[str, Any]] | None = None, _aws: Any = None) -> None:
        self.provider = provider
        self.conf_dir = conf_dir
        self.work_dir = work_dir
        self.log_dir = log_dir
        self.config_path = config_path
        self.templates_path = templates_path
        self.mode = mode  # "symphony", "lsf" or "standalone"
        self.why: dict[str, str] = {} if why is None else why
        self._config = _config
        self._templates = _templates
        self._aws = _aws

    def __repr__(self) -> str:
        fields = ("provider", "conf_dir", "work_dir", "log_dir", "config_path",
                  "templates_path", "mode")
        return "Context(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"

    @property
    def state_path(self) -> str:
        return os.path.join(self.work_dir, f"{self.provider}-state.json")

    @property
    def validated_path(self) -> str:
        """Schema checks that passed, so unchanged files skip jsonschema (validate.checked)."""
        return os.path.join(self.work_dir, f"{self.provider}-validated.json")

    @property
    def mem_key(self) -> str:
        return "mem" if self.mode == "lsf" else "nram"

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            from hostfactory_aws.config import load_config

            self._config = load_config(self.config_path, self.validated_path)
        return self._config

    @property
    def templates(self) -> list[dict[str, Any]]:
        if self._templates is None:
            from hostfactory_aws.templates import load_templates

            self._templates = load_templates(self.templates_path, self.validated_path)
        return self._templates

    @property
    def aws(self) -> Any:
        if self._aws is None:
            from hostfactory_aws.cloud.session import Aws

            self._aws = Aws(self.config)
        return self._aws

    def template(self, template_id: str) -> dict[str, Any]:
        from hostfactory_aws.templates import by_id

        t = by_id(self.templates, template_id)
        if t is None:
            known = ", ".join(x["templateId"] for x in self.templates) or "none"
            raise ConfigError(f"template.templateId: unknown template '{template_id}' "
                              f"(known in {self.templates_path}: {known})")
        return t


def _first(env: dict[str, str], *names: str) -> tuple[str | None, str]:
    for name in names:
        if env.get(name):
            return env[name], name
    return None, ""


def resolve(env: dict[str, str] | None = None) -> Context:
    """Work out the context from the environment alone."""
    env = dict(os.environ if env is None else env)
    why: dict[str, str] = {}
    name, src = _first(env, "HF_PROVIDER_NAME", "PROVIDER_NAME")
    provider = name or "aws"
    why["provider"] = f"${src}" if src else "default"
    if not all(c.isalnum() or c in "-_." for c in provider):
        raise ConfigError(f"{src or 'provider name'}: '{provider}' may only hold letters, "
                          "digits, '-', '_' and '.'")
    mode = "symphony" if env.get("HF_PROVIDER_CONFDIR") or env.get("HF_PROVIDER_NAME") else (
        "lsf" if env.get("PRO_CONF_DIR") or env.get("PROVIDER_NAME") else "standalone")

    conf, src = _first(env, "HF_PROVIDER_CONFDIR")
    if conf:
        why["conf_dir"] = "$HF_PROVIDER_CONFDIR"
    elif env.get("PRO_CONF_DIR"):
        conf = os.path.join(env["PRO_CONF_DIR"], "conf")
        why["conf_dir"] = "$PRO_CONF_DIR/conf"
    else:
        conf = os.path.join(PLUGIN_ROOT, "conf")
        why["conf_dir"] = "plugin conf/"
    work, src = _first(env, "HF_PROVIDER_WORKDIR", "PRO_DATA_DIR")
    why["work_dir"] = f"${src}" if src else "plugin work/"
    work = work or os.path.join(PLUGIN_ROOT, "work")
    logs, src = _first(env, "HF_PROVIDER_LOGDIR", "PRO_LSF_LOGDIR")
    why["log_dir"] = f"${src}" if src else "plugin log/"
    logs = logs or os.path.join(PLUGIN_ROOT, "log")

    paths = {}
    for kind in ("config", "templates"):
        own = os.path.join(conf, f"{provider}prov_{kind}.json")
        generic = os.path.join(conf, f"awsprov_{kind}.json")
        paths[kind] = own if os.path.isfile(own) else generic
        why[kind] = "provider-named file" if paths[kind] == own else "awsprov_ default"
    return Context(provider=provider, conf_dir=os.path.abspath(conf),
                   work_dir=os.path.abspath(work), log_dir=os.path.abspath(logs),
                   config_path=paths["config"], templates_path=paths["templates"],
                   mode=mode, why=why)


def ensure_dirs(ctx: Context) -> None:
    for d in (ctx.work_dir, ctx.log_dir):
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create directory {d}: {exc.strerror}") from exc
