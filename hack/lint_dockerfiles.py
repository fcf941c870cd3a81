"""A small Dockerfile linter for the rules the modelpilot images must keep.

hadolint is not installable from the package registries this project uses, so this checks the rules that
matter here: non-root final user, pinned base images (no `latest`), no `ADD` of URLs, apt lists removed in
the same layer as the install, `--no-install-recommends`, pip without a cache in the image (no cache, or the
cache on a `RUN --mount=type=cache` mount) and with pinned versions, multi-stage builds, exec-form
entrypoints. Usage: `python hack/lint_dockerfiles.py Dockerfile.*`; exit status 1 and one line per
finding (`file:line: RULE message`) when something is wrong.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT_USERS = {"0", "root", "0:0", "root:root"}
URL = re.compile(r"^https?://", re.IGNORECASE)
PIP_OPTIONS_WITH_VALUE = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--python",
    "-p",
    "--target",
    "--prefix",
}
ARG_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}?")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    line: int
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Finding:
    """A broken rule at a line of a file."""

    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule} {self.message}"


@dataclass
class Stage:
    """A build stage: its FROM and the instructions after it."""

    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile, comments dropped and `\\` continuations joined."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1] if continued else stripped)
        if not continued:
            keyword, _, arguments = " ".join(pending).partition(" ")
            instructions.append(Instruction(start, keyword.upper(), arguments.strip()))
            pending = []
    return instructions


def _global_args(instructions: list[Instruction]) -> dict[str, str]:
    """Default values of the ARGs declared before the first FROM."""
    defaults: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, value = instruction.arguments.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def _stages(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(name, instruction.line, [instruction]))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def _image_is_pinned(image: str) -> bool:
    """Pinned by digest: a tag (even a full version) can be moved to other content."""
    return "@sha256:" in image


def _check_from(path: str, stage: Stage, defaults: dict[str, str], names: set[str]) -> list[Finding]:
    first = stage.instructions[0]
    words = [w for w in first.arguments.split() if not w.startswith("--")]
    image = ARG_REFERENCE.sub(lambda m: defaults.get(m.group(1), m.group(0)), words[0])
    if image in names or image == "scratch":
        return []
    if "$" in image:
        return [Finding(path, first.line, "DF001", f"base image {words[0]} has no default to check")]
    if not _image_is_pinned(image):
        return [Finding(path, first.line, "DF001", f"base image {image} is not pinned by digest (@sha256:…)")]
    return []


def _packages(arguments: str) -> list[str]:
    """The package arguments of a pip install, option values skipped."""
    packages: list[str] = []
    words = iter(shlex.split(arguments))
    for word in words:
        if word in PIP_OPTIONS_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            packages.append(word)
    return packages


def _check_run(path: str, instruction: Instruction, env: str) -> list[Finding]:
    findings: list[Finding] = []
    command = instruction.arguments
    if re.search(r"\bapt-get\s+(-\S+\s+)*install\b", command):
        if "rm -rf /var/lib/apt/lists" not in command:
            findings.append(Finding(path, instruction.line, "DF010", "apt-get install without removing the apt lists"))
        if "--no-install-recommends" not in command:
            findings.append(Finding(path, instruction.line, "DF011", "apt-get install without --no-install-recommends"))
        if not re.search(r"\s(-y|--yes|-[a-z]*y[a-z]*)\b", command):
            findings.append(Finding(path, instruction.line, "DF012", "apt-get install without -y"))
    # A cache mount keeps the download cache out of the layer, and reuses it from build to build.
    cache_mount = re.search(r"--mount=(\S*,)?type=cache\b", command) is not None
    for match in re.finditer(r"\b(uv\s+)?pip3?\s+install\b([^&;|]*)", command):
        with_uv, arguments = match.group(1), match.group(2)
        if with_uv:
            no_cache = cache_mount or "--no-cache" in arguments or "UV_NO_CACHE" in env
        else:
            no_cache = cache_mount or "--no-cache-dir" in arguments or "PIP_NO_CACHE_DIR" in env
        if not no_cache:
            findings.append(Finding(path, instruction.line, "DF020", "pip install with a package cache in the image"))
        for package in _packages(arguments):
            if not re.search(r"(==|@|\.whl$|^\.|^/)", package):
                findings.append(Finding(path, instruction.line, "DF021", f"pip install of unpinned {package}"))
        # A requirements file is installed against its hashes. A single pinned tool is DF021's.
        from_file = re.search(r"(^|\s)(-r|--requirements?)\b", arguments) is not None
        if from_file and "--require-hashes" not in arguments:
            findings.append(Finding(path, instruction.line, "DF022", "requirements installed without --require-hashes"))
    if re.search(r"\bsudo\b", command):
        findings.append(Finding(path, instruction.line, "DF030", "sudo in a RUN; the build runs as root already"))
    if re.search(r"\b(curl|wget)\b[^|]*\|\s*(ba)?sh\b", command):
        findings.append(Finding(path, instruction.line, "DF031", "piping a download into a shell"))
    return findings


def lint(path: str, text: str) -> list[Finding]:
    """Every broken rule in one Dockerfile."""
    instructions = parse(text)
    stages = _stages(instructions)
    if not stages:
        return [Finding(path, 1, "DF000", "no FROM instruction")]
    findings: list[Finding] = []
    if len(stages) < 2:
        findings.append(Finding(path, stages[0].line, "DF002", "single-stage build; build tools end up in the image"))
    defaults = _global_args(instructions)
    names: set[str] = set()
    for stage in stages:
        findings += _check_from(path, stage, defaults, names)
        if stage.name:
            names.add(stage.name)
        env = " ".join(i.arguments for i in stage.instructions if i.keyword == "ENV")
        for instruction in stage.instructions:
            if instruction.keyword == "RUN":
                findings += _check_run(path, instruction, env)
            elif instruction.keyword == "ADD" and any(URL.match(w) for w in instruction.arguments.split()):
                findings.append(Finding(path, instruction.line, "DF040", "ADD of a URL; download in a RUN and verify"))
            elif instruction.keyword == "COPY" and re.search(r"--from=\S*(uv|astral)", instruction.arguments):
                findings.append(Finding(path, instruction.line, "DF041", "uv copied from an image; pip install uv"))
            elif instruction.keyword == "WORKDIR" and not instruction.arguments.startswith(("/", "$")):
                findings.append(Finding(path, instruction.line, "DF050", "relative WORKDIR"))
            elif instruction.keyword in {"CMD", "ENTRYPOINT"} and not instruction.arguments.startswith("["):
                findings.append(
                    Finding(path, instruction.line, "DF051", f"{instruction.keyword} in shell form; use exec form")
                )
        if re.search(r"\blatest\b", stage.instructions[0].arguments):
            findings.append(Finding(path, stage.line, "DF003", "the tag latest is not a pin"))
    final = stages[-1]
    users = [i for i in final.instructions if i.keyword == "USER"]
    if not users:
        findings.append(Finding(path, final.line, "DF060", "the final stage runs as root (no USER)"))
    elif users[-1].arguments.strip() in ROOT_USERS or users[-1].arguments.strip().startswith("0:"):
        findings.append(Finding(path, users[-1].line, "DF060", "the final stage runs as root"))
    elif not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1].arguments.strip()):
        # Kubernetes runAsNonRoot can only verify a numeric user.
        findings.append(Finding(path, users[-1].line, "DF061", "USER should be numeric so runAsNonRoot can verify it"))
    return findings


def main(paths: list[str]) -> int:
    """Lint the given Dockerfiles; print findings; 1 if any."""
    if not paths:
        print("usage: lint_dockerfiles.py Dockerfile...", file=sys.stderr)
        return 2
    findings = [finding for path in paths for finding in lint(path, Path(path).read_text())]
    for finding in findings:
        print(finding)
    if not findings:
        print(f"{len(paths)} Dockerfile(s): no findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
