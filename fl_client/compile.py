"""Compile the Solidity sources offline through py-solc-x, with a build cache.

The compiler is a native ``solc`` of the configured version when one is installed (py-solc-x's
folder or ``PATH``); otherwise solc-js from npm, driven through ``tools/solc_shim.js``, which
answers the command line that py-solc-x speaks. Version, optimizer and EVM version come from
``brownie-config.yaml``. The ABI and bytecode are cached in ``build/contracts.json`` and rebuilt
when a source, a setting or the compiler changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import solcx
import solcx.install
from solcx.exceptions import SolcError, SolcNotInstalled

from fl_client.config import PROJECT_ROOT, CompilerSettings, load_config
from fl_client.errors import CompileError

logger = logging.getLogger(__name__)

CONTRACTS_DIR = PROJECT_ROOT / "contracts"
BUILD_FILE = PROJECT_ROOT / "build" / "contracts.json"
SHIM = PROJECT_ROOT / "tools" / "solc_shim.js"
SHIM_FOLDER = PROJECT_ROOT / ".cache" / "solcx"
SOLCJS_PACKAGE = PROJECT_ROOT / "node_modules" / "solc" / "package.json"
NPM_LOCK = PROJECT_ROOT / "package-lock.json"


@dataclass(frozen=True)
class CompiledContract:
    """What deployment needs of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_size: int
    storage_layout: list[dict[str, Any]] | None = None


def _native_solc(version: str) -> Path | None:
    try:
        installed = [str(v) for v in solcx.get_installed_solc_versions()]
    except OSError:
        installed = []
    if version in installed:
        return Path(solcx.install.get_executable(version))
    on_path = shutil.which("solc")
    if on_path:
        try:
            printed = subprocess.run(
                [on_path, "--version"], capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        if f"Version: {version}+" in printed:
            return Path(on_path)
    return None


def find_compiler(version: str) -> Path:
    """Path of a compiler binary of ``version`` that py-solc-x can drive.

    Raises
    ------
    CompileError
        When neither a native solc nor the npm solc of that version is installed.
    """
    native = _native_solc(version)
    if native is not None:
        return native
    if not SOLCJS_PACKAGE.exists():
        raise CompileError(
            f"no solc {version} found: install the npm toolchain with `bash tools/setup.sh` "
            "(or `npm ci` in the project root)"
        )
    npm_version = json.loads(SOLCJS_PACKAGE.read_text(encoding="utf-8"))["version"]
    if npm_version != version:
        raise CompileError(
            f"brownie-config.yaml asks for solc {version} but node_modules has solc-js {npm_version}; "
            "pin the same version in package.json and run `npm ci`"
        )
    SHIM_FOLDER.mkdir(parents=True, exist_ok=True)
    _link(SHIM_FOLDER / f"solc-v{version}", SHIM)
    try:
        return Path(solcx.install.get_executable(version, solcx_binary_path=SHIM_FOLDER))
    except SolcNotInstalled as exc:  # pragma: no cover - the link was just made
        raise CompileError(str(exc)) from exc


def _link(link: Path, target: Path) -> None:
    """Makes ``link`` a symbolic link to ``target``, safely when other processes do the same at
    once (clients or test workers started together on a fresh clone): a link under a name of this
    process's own, renamed over ``link``, so that none of them finds it half made or in its way."""
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    temporary = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    os.replace(temporary, link)


def _sources() -> dict[str, Path]:
    return {
        path.relative_to(PROJECT_ROOT).as_posix(): path
        for path in sorted(CONTRACTS_DIR.rglob("*.sol"))
    }


def _standard_input(sources: dict[str, Path], settings: CompilerSettings) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {
            name: {"content": path.read_text(encoding="utf-8")} for name, path in sources.items()
        },
        "settings": {
            "evmVersion": settings.evm_version,
            "optimizer": {"enabled": settings.optimizer_enabled, "runs": settings.optimizer_runs},
            "viaIR": settings.via_ir,
            "remappings": list(settings.remappings),
            "outputSelection": {
                "*": {
                    "*": [
                        "abi",
                        "evm.bytecode.object",
                        "evm.deployedBytecode.object",
                        "storageLayout",
                    ]
                }
            },
        },
    }


def _fingerprint(standard_input: dict[str, Any], compiler: Path, version: str) -> str:
    digest = hashlib.sha256(json.dumps(standard_input, sort_keys=True).encode())
    digest.update(f"{compiler.resolve()}|{version}".encode())
    # The libraries the sources import come from npm: their pinned versions are part of the build.
    if NPM_LOCK.exists():
        digest.update(NPM_LOCK.read_bytes())
    return digest.hexdigest()


def _messages(stdout: str | None) -> str:
    try:
        errors = json.loads(stdout or "{}").get("errors", [])
    except (ValueError, AttributeError):
        return (stdout or "")[:2000]
    return "\n".join(
        e.get("formattedMessage", str(e)) for e in errors if e.get("severity") == "error"
    )


def compile_contracts(*, force: bool = False) -> dict[str, CompiledContract]:
    """Compile every contract under ``contracts/`` (or read the cache) and return them by name."""
    settings = load_config().compiler
    sources = _sources()
    if not sources:
        raise CompileError(f"no Solidity sources under {CONTRACTS_DIR}")
    standard_input = _standard_input(sources, settings)
    compiler = find_compiler(settings.version)
    fingerprint = _fingerprint(standard_input, compiler, settings.version)
    if not force:
        cached = _read_cache()
        if cached is not None and cached.get("fingerprint") == fingerprint:
            return {name: CompiledContract(**entry) for name, entry in cached["contracts"].items()}
    logger.info("compiling %d Solidity sources with %s", len(sources), compiler)
    try:
        output = solcx.compile_standard(
            standard_input, base_path=str(PROJECT_ROOT), solc_binary=compiler, allow_empty=True
        )
    except SolcError as exc:
        raise CompileError(f"solc rejected the sources:\n{_messages(exc.stdout_data)}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", str(e)) for e in errors))
    contracts: dict[str, CompiledContract] = {}
    for per_file in output["contracts"].values():
        for name, data in per_file.items():
            bytecode = data["evm"]["bytecode"]["object"]
            if not bytecode:
                continue  # interfaces and libraries of internal functions only
            contracts[name] = CompiledContract(
                name=name,
                abi=data["abi"],
                bytecode="0x" + bytecode,
                deployed_size=len(data["evm"]["deployedBytecode"]["object"]) // 2,
                storage_layout=data.get("storageLayout", {}).get("storage"),
            )
    _write_cache(
        {
            "fingerprint": fingerprint,
            "compiler": settings.version,
            "contracts": {name: c.__dict__ for name, c in contracts.items()},
        }
    )
    return contracts


def _read_cache() -> dict[str, Any] | None:
    """The build cache, or ``None`` when there is none or it cannot be read (then it is rebuilt)."""
    try:
        cached = json.loads(BUILD_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cached if isinstance(cached, dict) else None


def _write_cache(content: dict[str, Any]) -> None:
    """Replaces the build cache at once (a temporary file renamed over it), so that a process
    that compiles at the same time as another, or reads while it writes, never sees half a file."""
    BUILD_FILE.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=BUILD_FILE.parent, prefix=".contracts-", suffix=".json"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(content, out, indent=1)
        os.replace(temporary, BUILD_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def get_contract(name: str) -> CompiledContract:
    """One compiled contract by name."""
    contracts = compile_contracts()
    try:
        return contracts[name]
    except KeyError:
        raise CompileError(
            f"no contract named {name!r}; compiled: {', '.join(sorted(contracts))}"
        ) from None
