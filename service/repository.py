"""The models a worker serves: every exported model directory in MODEL_REPOSITORY, under its folder name (or the
one MODEL_DIR), each an Engine on the worker's one inference thread.

A load builds the new version beside the old one (files hashed against model.json, every batch size run once,
outputs checked finite), then switches the name to it in one assignment: requests that already hold the old
version finish on it, and it is stopped only once it has been idle for RETIRE_GRACE_S. A version that fails
any check is refused (LoadRefused, naming the file) and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path

import numpy as np
from starlette.concurrency import run_in_threadpool

from service.engine import SESSIONS, Engine, Inference
from service.latents import draw
from service.metrics import Metrics
from service.model import CUDA, Model, ModelError, load_model
from service.settings import ConfigurationError, Settings
from service.workers import followed, generation, record_unloaded, tell_siblings, unloaded_models

log = logging.getLogger("service.repository")
RETIRE_GRACE_S = 2.0  # an old version stopped after this long without a request: covers a lookup still on its way
MODEL_FILE = "model.json"


class UnknownModel(Exception):
    """No served model of that name (404 naming it, and the models there are)."""

    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown model {name!r}; models: {', '.join(known) or 'none'}")
        self.name = name


class LoadRefused(Exception):
    """A model directory that cannot be served as it is (400 naming the file); what was served stays."""


def model_directories(settings: Settings) -> dict[str, Path]:
    """The servable directories by name: MODEL_DIR alone when set, else MODEL_REPOSITORY's sub-folders that hold
    a model.json."""
    if settings.model_dir is not None:
        return {settings.model_dir.resolve().name: settings.model_dir}
    repository = settings.model_repository
    try:
        return {d.name: d for d in sorted(repository.iterdir()) if (d / MODEL_FILE).is_file()}
    except OSError as error:
        raise ConfigurationError(f"MODEL_REPOSITORY {repository}: {error.strerror or error}") from None


def fingerprint(directory: Path) -> tuple:
    """What changes when a model directory's files do: their names, sizes and modification times."""
    try:
        return tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in directory.iterdir()
                            if f.suffix in (".json", ".onnx")))
    except OSError:
        return ()


def default_model(settings: Settings) -> str:
    return settings.model_dir.resolve().name if settings.model_dir is not None else settings.default_model


def open_model(settings: Settings, directory: Path) -> Model:
    """Loads a model directory and enforces REQUIRE_GPU against the live session's provider."""
    model = load_model(directory, settings.threads_per_worker())
    if settings.require_gpu and model.provider != CUDA:
        raise ModelError(f"{directory}: REQUIRE_GPU is set but the session runs on {model.provider} "
                         "(is onnxruntime-gpu installed and a GPU visible?)")
    return model


def open_models(settings: Settings) -> dict[str, Model]:
    """Every servable model, opened; ConfigurationError (naming the file or setting) for the first that fails,
    or when the default model is not among them."""
    directories = model_directories(settings)
    name = default_model(settings)
    if name not in directories:
        raise ConfigurationError(f"DEFAULT_MODEL {name!r}: no such model in {settings.model_repository} "
                                 f"(models: {', '.join(directories) or 'none'})")
    return {name: open_model(settings, directory) for name, directory in directories.items()}


def check_outputs(engine: Engine) -> None:
    """The new version's sessions answer with finite numbers of the shapes they declare (run on the inference
    thread, after its warm-up)."""
    images = engine.model.generator.run(None, draw(engine.model.layout, 0, range(2)).feeds())[0]
    if images.shape[0] != 2 or not np.isfinite(images).all():
        raise LoadRefused(f"{engine.model.directory / 'generator.onnx'}: its images are not finite")
    if engine.model.encoder is not None:
        outputs = engine.model.encoder.run(None, {"images": images.astype(np.float32)})
        if not all(np.isfinite(output).all() for output in outputs):
            raise LoadRefused(f"{engine.model.directory / 'encoder.onnx'}: its readings are not finite")


class Repository:
    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.default = default_model(settings)
        self.engines: dict[str, Engine] = {}
        self.inference: Inference | None = None
        self.draining = False  # set on SIGTERM: /readyz answers 503 while in-flight requests finish
        self.changing = asyncio.Lock()  # one load or unload at a time
        self.background: set[asyncio.Task] = set()  # retirements and follow-ups, kept until done
        self.seen: dict[str, tuple] = {}  # each directory's fingerprint when it was last loaded, or refused
        self.polling: asyncio.Task | None = None
        self.reached = 0  # the generation of the API's changes this worker started from (service/workers.py)

    async def start(self, models: dict[str, Model] | None = None) -> None:
        """Serves the repository's models (or those given, already opened), each warmed up before the first
        connection is accepted."""
        # What the API decided and the files' fingerprints, read before the files are: a worker serves what its
        # siblings serve, a load made through a sibling while this one starts is newer than `reached` (followed
        # by `catch_up`), and a directory that changes while it is read is loaded again by `follow`.
        self.reached, unloaded = generation(), unloaded_models()
        if models is None:
            self.seen = {name: fingerprint(directory) for name, directory in model_directories(self.settings).items()}
            models = open_models(self.settings)
        else:
            self.seen = {name: fingerprint(model.directory) for name, model in models.items()}
        self.inference = Inference(self.settings, next(iter(models.values())).provider)
        for name, model in models.items():
            if name not in unloaded:
                self.engines[name] = await self.started(name, model)
        followed(self.reached)
        if self.settings.model_poll_s:
            self.polling = asyncio.create_task(self.poll(self.settings.model_poll_s))

    async def started(self, name: str, model: Model) -> Engine:
        engine = Engine(name, model, self.settings, self.metrics, self.inference)
        await engine.start()
        return engine

    @property
    def ready(self) -> bool:
        return not self.draining and all(engine.ready for engine in self.engines.values())

    def find(self, name: str | None = None) -> Engine | None:
        """The served version of a model, the default one when no name is given (None: none such)."""
        return self.engines.get(self.default if name is None else name)

    def engine(self, name: str | None = None) -> Engine:
        """As `find`, an empty name as none; UnknownModel when there is no such model."""
        found = self.find(name or None)
        if found is None:
            raise UnknownModel(name or self.default, sorted(self.engines))
        return found

    async def load(self, name: str) -> Engine:
        """(Re)loads a model from its directory; the version served until then retires once idle. The other
        workers follow."""
        engine = await self.load_here(name)
        record_unloaded(unloaded_models() - {name})
        await tell_siblings()
        return engine

    async def unload(self, name: str) -> None:
        async with self.changing:
            if name not in self.engines:
                raise UnknownModel(name, sorted(self.engines))
            record_unloaded(unloaded_models() | {name})
            self.retire(self.engines.pop(name))
        await tell_siblings()

    async def follow(self) -> None:
        """Serves what the repository and the API decided: loads every model directory that is new or whose files
        changed since it was last loaded or refused (a refused one again once its files change), unloads what
        was unloaded through the API (on SIGHUP, from a sibling worker or an operator, and with MODEL_POLL_S)."""
        reached, unloaded = generation(), unloaded_models()
        for name in [name for name in self.engines if name in unloaded]:
            async with self.changing:
                self.retire(self.engines.pop(name))
        for name, directory in model_directories(self.settings).items():
            if name not in unloaded and (name not in self.engines or fingerprint(directory) != self.seen.get(name)):
                try:
                    await self.load_here(name)
                except LoadRefused as error:
                    log.warning("model %s not loaded: %s", name, error)
        followed(reached)

    async def load_here(self, name: str) -> Engine:
        async with self.changing:
            directories = model_directories(self.settings)
            if name not in directories:
                raise UnknownModel(name, sorted(directories))
            self.seen[name] = fingerprint(directories[name])
            try:
                model = await run_in_threadpool(open_model, self.settings, directories[name])
            except ModelError as error:
                raise LoadRefused(str(error)) from None
            engine = await self.started(name, model)
            try:
                await asyncio.get_running_loop().run_in_executor(self.inference.executor, check_outputs, engine)
            except LoadRefused:
                await engine.stop()
                raise
            old, self.engines[name] = self.engines.get(name), engine
            if old is not None:
                self.retire(old)
            log.info("model %s loaded from %s", name, directories[name])
            return engine

    async def poll(self, interval_s: float) -> None:
        """MODEL_POLL_S: follows the repository every interval_s."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.follow()
            except ConfigurationError as error:
                log.warning("repository poll: %s", error)

    def retire(self, engine: Engine) -> None:
        self.in_background(self._retire(engine))

    def follow_soon(self) -> None:
        self.in_background(self.follow())

    def catch_up(self) -> None:
        """Once the worker listens for news of changes: follows any made through a sibling while it started."""
        if generation() > self.reached:
            self.follow_soon()

    def in_background(self, work: Coroutine) -> None:
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _retire(self, engine: Engine) -> None:
        quiet_since = None
        loop = asyncio.get_running_loop()
        while quiet_since is None or loop.time() - quiet_since < RETIRE_GRACE_S:
            await asyncio.sleep(0.05)
            quiet_since = (quiet_since or loop.time()) if engine.idle() else None
        await engine.stop()

    def index(self) -> list[dict]:
        """Every model in the repository, served or not: name, state and sessions (those its files hold)."""
        entries = []
        for name, directory in model_directories(self.settings).items():
            engine = self.engines.get(name)
            sessions = [session for session in SESSIONS
                        if (engine.batcher(session) if engine else (directory / f"{session}.onnx").is_file())]
            entries.append({"name": name, "state": "READY" if engine and engine.ready else "UNAVAILABLE",
                            "sessions": sessions})
        return entries

    async def stop(self) -> None:
        if self.polling is not None:
            self.polling.cancel()
        for task in list(self.background):
            task.cancel()
        for engine in self.engines.values():
            await engine.stop()
        if self.inference is not None:
            self.inference.stop()
