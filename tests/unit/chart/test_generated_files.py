"""Generated and checked files outside the chart: plain manifests and Dockerfiles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.chart.conftest import REPO

LINTER = REPO / "hack" / "lint_dockerfiles.py"


PINNED = f"python:3.11.14-slim-bookworm@sha256:{'0' * 64}"


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LINTER), *map(str, paths)], capture_output=True, text=True, check=False, timeout=60
    )


def test_plain_manifests_are_rendered_from_the_current_chart() -> None:
    result = subprocess.run(
        [str(REPO / "hack" / "render-manifests"), "--check"], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_dockerfiles_pass_the_linter() -> None:
    dockerfiles = sorted(REPO.glob("Dockerfile.*"))
    assert {path.name for path in dockerfiles} == {"Dockerfile.operator", "Dockerfile.inference", "Dockerfile.train"}
    result = lint(*dockerfiles)
    assert result.returncode == 0, result.stdout


def test_the_linter_catches_what_the_images_must_not_do(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "ADD https://example.com/tool.tgz /opt/\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "RUN pip install uv\n"
        "COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /bin/uv\n"
        "USER root\n"
        "CMD python -m app\n"
    )
    result = lint(bad)
    assert result.returncode == 1
    rules = {line.split()[1] for line in result.stdout.splitlines()}
    assert rules == {
        "DF001",
        "DF002",
        "DF003",
        "DF010",
        "DF011",
        "DF020",
        "DF021",
        "DF040",
        "DF041",
        "DF051",
        "DF060",
    }


def test_a_base_image_pinned_by_tag_alone_is_not_pinned(tmp_path: Path) -> None:
    tagged = tmp_path / "Dockerfile"
    tagged.write_text("ARG BASE=python:3.11.14-slim-bookworm\nFROM ${BASE} AS build\nFROM ${BASE}\nUSER 10001\n")
    result = lint(tagged)
    assert result.returncode == 1
    assert [line.split()[1] for line in result.stdout.splitlines()] == ["DF001", "DF001"]
    assert "not pinned by digest" in result.stdout


def test_the_linter_accepts_a_clean_multi_stage_build(tmp_path: Path) -> None:
    good = tmp_path / "Dockerfile"
    good.write_text(
        f"ARG BASE={PINNED}\n"
        "FROM ${BASE} AS build\n"
        "COPY uv-requirements.txt /tmp/\n"
        "RUN pip install --no-cache-dir --require-hashes -r /tmp/uv-requirements.txt\n"
        "RUN uv pip install --no-cache --require-hashes -r /tmp/requirements.txt && uv pip install --no-cache ./app\n"
        "FROM ${BASE}\n"
        "RUN apt-get update \\\n"
        "    && apt-get install -y --no-install-recommends ca-certificates \\\n"
        "    && rm -rf /var/lib/apt/lists/*\n"
        "COPY --from=build /usr/local /usr/local\n"
        "USER 10001:10001\n"
        'ENTRYPOINT ["app"]\n'
    )
    result = lint(good)
    assert result.returncode == 0, result.stdout


def test_a_download_cache_on_a_cache_mount_is_not_in_the_image(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {PINNED} AS build\n"
        "RUN --mount=type=cache,id=uv,target=/root/.cache/uv uv pip install --system --require-hashes -r req.txt\n"
        "RUN --mount=type=cache,target=/root/.cache/pip pip install --require-hashes -r uv.txt\n"
        "RUN --mount=type=bind,source=x,target=/x uv pip install --system --require-hashes -r /x/req.txt\n"
        f"FROM {PINNED}\n"
        "USER 10001:10001\n"
        'ENTRYPOINT ["app"]\n'
    )
    result = lint(dockerfile)
    assert result.stdout.splitlines() == [f"{dockerfile}:4: DF020 pip install with a package cache in the image"]


def test_docker_build_context_is_limited_to_sources() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "**" in lines, "the build context should start empty and allow sources explicitly"
    assert "!uv.lock" in lines


def test_what_comes_from_an_index_is_checked_against_hashes(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {PINNED} AS build\n"
        "RUN pip install --no-cache-dir -r /tmp/uv-requirements.txt\n"
        "RUN uv pip install --no-cache -r /tmp/requirements.txt\n"
        "RUN uv pip install --no-cache --index-url https://download.pytorch.org/whl/cpu -r /tmp/torch.txt\n"
        "RUN uv pip install --no-cache ./app\n"
        f"FROM {PINNED}\n"
        "USER 10001:10001\n"
        'ENTRYPOINT ["app"]\n'
    )
    result = lint(dockerfile)
    assert result.stdout.splitlines() == [
        f"{dockerfile}:2: DF022 requirements installed without --require-hashes",
        f"{dockerfile}:3: DF022 requirements installed without --require-hashes",
        f"{dockerfile}:4: DF022 requirements installed without --require-hashes",  # another index: hashes all the same
    ]
