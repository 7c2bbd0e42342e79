"""Where things are: provider name, conf/work/log dirs, config and templates files.

Symphony's HF_* variables first, then LSF's PRO_* ones, then the plugin dir's own conf/,
work/ and log/. Never the current directory: HostFactory does not promise one.

The plugin dir is the one holding scripts/invoke_provider.sh, so the admin command and the
scripts agree whatever the install: the scripts export it as $HOSTFACTORY_AWS_HOME; a source
checkout or an editable install has it as the package's parent; ``pip install .`` into a venv
inside the plugin dir has it as the venv's parent. Where none holds the scripts there is no
default: a state file in site-packages would be a different grid's view.
"""

from __future__ import annotations

import os
import sys

from hostfactory_aws.errors import ConfigError

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any

PLUGIN_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package's parent
SCRIPTS_MARKER = os.path.join("scripts", "invoke_provider.sh")
HOME_VARIABLE = "HOSTFACTORY_AWS_HOME"
DIR_VARIABLES = {"symphony": ("HF_PROVIDER_CONFDIR", "HF_PROVIDER_WORKDIR", "HF_PROVIDER_LOGDIR"),
                 "lsf": ("PRO_CONF_DIR", "PRO_DATA_DIR", "PRO_LSF_LOGDIR")}


class Context:
    """Where one call's files are; config, templates and AWS access are made once, on use.

    A plain class rather than a dataclass: importing dataclasses (and inspect with it)
    costs ~10 ms, a tenth of a getAvailableTemplates call.
    """

    def __init__(self, provider: str, conf_dir: str, work_dir: str, log_dir: str,
                 config_path: str, templates_path: str, mode: str,
                 why: dict[str, str] | None = None, unsure: str = "",
                 plugin_dir: str | None = None, _config: dict[str, Any] | None = None,
                 _templates: list[dict[str, Any]] | None = None, _aws: Any = None) -> None:
        self.provider = provider
        self.conf_dir = conf_dir
        self.work_dir = work_dir
        self.log_dir = log_dir
        self.config_path = config_path
        self.templates_path = templates_path
        self.mode = mode  # "symphony", "lsf" or "standalone"
        self.why: dict[str, str] = {} if why is None else why
        # Empty when the dirs are HostFactory's own (its variables, or the plugin dir found
        # beside the scripts); else why they may not be, for commands that end hosts.
        self.unsure = unsure
        self.plugin_dir = plugin_dir
        self._config = _config
        self._templates = _templates
        self._aws = _aws
        self.template_errors: dict[str, str] = {}  # template left out -> why (templates.py)
        self.template_warnings: list[str] = []  # unknown keys, ignored

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
        """The good templates; one in error is left out alone (see template_errors)."""
        if self._templates is None:
            from hostfactory_aws.templates import load_template_file, log_problems

            found = load_template_file(self.templates_path, self.validated_path)
            log_problems(found, self.validated_path)
            self._templates, self.template_errors = found.good, found.bad
            self.template_warnings = found.warnings
        return self._templates

    @property
    def aws(self) -> Any:
        if self._aws is None:
            from hostfactory_aws.cloud.session import Aws

            self._aws = Aws(self.config, cache_dir=self.work_dir)
        return self._aws

    def template(self, template_id: str) -> dict[str, Any]:
        from hostfactory_aws.templates import by_id

        t = by_id(self.templates, template_id)
        if t is None and template_id in self.template_errors:
            raise ConfigError(f"template.templateId: template '{template_id}' is in error: "
                              f"{self.template_errors[template_id]}")
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


def find_plugin_dir(env: dict[str, str]) -> tuple[str | None, str]:
    """The plugin dir (it holds scripts/invoke_provider.sh) and how it was found."""
    home = env.get(HOME_VARIABLE)
    if home:
        return os.path.abspath(home), f"${HOME_VARIABLE}"
    for cand, how in ((PLUGIN_ROOT, "the package's own dir"),
                      (os.path.dirname(os.path.abspath(sys.prefix)), "the parent of the venv "
                                                                      f"{sys.prefix}")):
        if os.path.isfile(os.path.join(cand, SCRIPTS_MARKER)):
            return cand, how
    return None, (f"neither {PLUGIN_ROOT} nor the venv's parent holds {SCRIPTS_MARKER}")


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
    root, found = find_plugin_dir(env)
    beside = root is not None and os.path.isfile(os.path.join(root, SCRIPTS_MARKER))

    def default(kind: str, sub: str) -> str:
        if root is None:
            raise ConfigError(
                f"{kind.replace('_', ' ')}: no HostFactory variable names it and no plugin "
                f"dir was found ({found}): export the variables HostFactory sets "
                "(HF_PROVIDER_CONFDIR, HF_PROVIDER_WORKDIR, HF_PROVIDER_LOGDIR; for LSF "
                f"PRO_CONF_DIR, PRO_DATA_DIR, PRO_LSF_LOGDIR), or {HOME_VARIABLE}=<the plugin "
                "dir holding scripts/>")
        why[kind] = f"{sub}/ of the plugin dir {root} (found as {found})"
        return os.path.join(root, sub)

    from_vars: list[str] = []
    conf, src = _first(env, "HF_PROVIDER_CONFDIR")
    if conf:
        why["conf_dir"] = "$HF_PROVIDER_CONFDIR"
    elif env.get("PRO_CONF_DIR"):
        conf, src = os.path.join(env["PRO_CONF_DIR"], "conf"), "PRO_CONF_DIR"
        why["conf_dir"] = "$PRO_CONF_DIR/conf"
    else:
        conf = default("conf_dir", "conf")
    from_vars += [src] if src else []
    dirs = {}
    for key, sub, names in (("work_dir", "work", ("HF_PROVIDER_WORKDIR", "PRO_DATA_DIR")),
                            ("log_dir", "log", ("HF_PROVIDER_LOGDIR", "PRO_LSF_LOGDIR"))):
        value, src = _first(env, *names)
        if value:
            why[key] = f"${src}"
            from_vars.append(src)
        dirs[key] = value or default(key, sub)
    work, logs = dirs["work_dir"], dirs["log_dir"]

    paths = {}
    for kind in ("config", "templates"):
        own = os.path.join(conf, f"{provider}prov_{kind}.json")
        generic = os.path.join(conf, f"awsprov_{kind}.json")
        paths[kind] = own if os.path.isfile(own) else generic
        why[kind] = "provider-named file" if paths[kind] == own else "awsprov_ default"
    return Context(provider=provider, conf_dir=os.path.abspath(conf),
                   work_dir=os.path.abspath(work), log_dir=os.path.abspath(logs),
                   config_path=paths["config"], templates_path=paths["templates"],
                   mode=mode, why=why, unsure=_unsure(mode, from_vars, beside, root),
                   plugin_dir=root)


def _unsure(mode: str, from_vars: list[str], beside: bool, root: str | None) -> str:
    """Why these dirs may not be HostFactory's (empty when they are).

    HostFactory sets all three dir variables; a shell with only some of them mixes
    HostFactory's dirs with the plugin's defaults, which is how a wrong state file is read.
    """
    if len(from_vars) == 3:
        return ""
    if from_vars:
        names = DIR_VARIABLES["lsf" if mode == "lsf" else "symphony"]
        missing = [n for n in names if n not in from_vars]
        return (f"{', '.join(from_vars)} set but {', '.join(missing)} not: HostFactory sets "
                "all of them, so this shell does not see HostFactory's state; export them "
                "as in HostFactory's environment (`hostfactory-aws doctor` shows each dir)")
    if not beside:
        return (f"the plugin dir {root} holds no {SCRIPTS_MARKER}, so it is not the one "
                "HostFactory runs; export the dir variables HostFactory sets")
    return ""


def ensure_dirs(ctx: Context) -> None:
    """Create the work (0700: the state of every machine) and log (0750) dirs if missing;
    one line naming the dir and the fix when that fails."""
    ensure_dir(ctx.work_dir, 0o700)
    ensure_dir(ctx.log_dir, 0o750)


DIR_FIX_VARIABLES = {"work": "HF_PROVIDER_WORKDIR (LSF: PRO_DATA_DIR)",
                 "log": "HF_PROVIDER_LOGDIR (LSF: PRO_LSF_LOGDIR)"}


def ensure_dir(d: str, mode: int, kind: str = "") -> None:
    """``d`` exists and this user can write in it, else a ConfigError naming dir and fix."""
    var = DIR_FIX_VARIABLES.get(kind or ("work" if mode == 0o700 else "log"))
    try:
        os.makedirs(d, mode=mode, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory {d}: {exc.strerror}; create it for "
                          f"this user or set {var} to a writable directory") from exc
    if not os.access(d, os.W_OK | os.X_OK):
        raise ConfigError(f"directory {d} is not writable by this user (uid "
                          f"{os.getuid()}): make it writable, or set {var} to a "
                          "writable directory")
