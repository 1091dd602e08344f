"""The JVM side of the runtime: finds `java` and `mvn`, fetches the pinned jars into the jar cache.

The jars come from Maven Central through `mvn dependency:copy-dependencies` on the poms in
`supervisor/jvm/`; nothing is built. Each artifact set lives in its own cache directory and is
complete only once its marker file exists (written last), so an interrupted fetch is redone.
A file lock makes concurrent first fetches (two test sessions, `up` and `fetch`) safe.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

MIN_JAVA_MAJOR = 17
JVM_DIR = Path(__file__).resolve().parent / "jvm"
# Given to every broker and member JVM. C1 only (no C2): the JIT compiles little, early. With C2 the
# six JVMs spent the first ~2 minutes of load compiling (179% CPU summed over the pipeline at 500 msg/s,
# p99 100-120 ms) and `up` took 17.5 s; with C1 only: 125% and p99 ~40 ms from the first minute, `up`
# 12.5 s. Warm C2 code is ~4 points of a core cheaper at 500 msg/s: not worth minutes of JIT storm.
JVM_JIT_FLAGS = ["-XX:TieredStopAtLevel=1"]
MARKER = ".complete"
FETCH_TIMEOUT = 900.0


class RuntimeSetupError(Exception):
    """A missing or unusable tool (java, mvn) or a failed jar fetch; the message says how to fix it."""


@dataclass(frozen=True)
class Artifact:
    """One pinned artifact set: a pom in supervisor/jvm and the cache directory it fills."""

    title: str  # for progress lines, e.g. "Kafka 4.1.1"
    pom: str  # file name in supervisor/jvm
    cache_name: str  # directory name in the jar cache

    @property
    def pom_path(self) -> Path:
        return JVM_DIR / self.pom


KAFKA = Artifact("Kafka 4.1.1", "kafka.pom.xml", "kafka-4.1.1")
HAZELCAST = Artifact("Hazelcast 5.6.0", "hazelcast.pom.xml", "hazelcast-5.6.0")


@dataclass(frozen=True)
class Jars:
    """Java classpaths (the `-cp` argument) for the broker and the member."""

    kafka_classpath: str
    hazelcast_classpath: str


def java_major_version(version_output: str) -> int:
    """Major version from `java -version` output: `"17.0.15"` -> 17, `"1.8.0_392"` -> 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        raise ValueError(f"no version in {version_output.strip()[:200]!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        major = int(match.group(2))
    return major


def _candidate(home_var: str, tool: str) -> str | None:
    home = os.environ.get(home_var)
    if home:
        path = Path(home) / "bin" / tool
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(tool)


def find_java() -> str:
    """Path of a Java 17+ `java`: `$JAVA_HOME/bin/java` if JAVA_HOME is set, else the one on PATH."""
    hint = "install OpenJDK 17+ (Debian: apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
    java = _candidate("JAVA_HOME", "java")
    if java is None:
        where = f"in JAVA_HOME={os.environ['JAVA_HOME']}" if os.environ.get("JAVA_HOME") else "on PATH"
        raise RuntimeSetupError(f"java not found ({where}): {hint}")
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
        major = java_major_version(result.stderr + result.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise RuntimeSetupError(f"{java} does not run as a JVM ({exc}): {hint}") from exc
    if major < MIN_JAVA_MAJOR:
        raise RuntimeSetupError(f"{java} is Java {major}, need {MIN_JAVA_MAJOR}+: {hint}")
    return java


def find_mvn() -> str:
    """Path of Maven's `mvn`: `$MAVEN_HOME/bin/mvn` if MAVEN_HOME is set, else the one on PATH."""
    mvn = _candidate("MAVEN_HOME", "mvn")
    if mvn is None:
        raise RuntimeSetupError(
            "mvn not found: install Maven 3.6+ (Debian: apt-get install maven) or set MAVEN_HOME; "
            "it is needed once, to fetch the Kafka and Hazelcast jars"
        )
    return mvn


def jar_cache_dir() -> Path:
    """`$PIPELINE_JAR_CACHE`, else `~/.cache/replicated-pipeline/jars`."""
    configured = os.environ.get("PIPELINE_JAR_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "replicated-pipeline" / "jars"


@contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _is_complete(directory: Path) -> bool:
    marker = directory / MARKER
    if not marker.is_file():
        return False
    names = marker.read_text().split()
    return bool(names) and all((directory / name).is_file() for name in names)


def _fetch(artifact: Artifact, directory: Path, progress: Callable[[str], None]) -> None:
    mvn = find_mvn()
    find_java()  # Maven needs a JVM too; fail with the clear message first
    if directory.exists():
        shutil.rmtree(directory)
    progress(f"fetching {artifact.title} jars with Maven into {directory} (first use only) ...")
    started = time.monotonic()
    argv = [mvn, "-q", "-B", "-f", str(artifact.pom_path), "dependency:copy-dependencies",
            f"-DoutputDirectory={directory}"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=FETCH_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeSetupError(
            f"fetching {artifact.title} jars took over {FETCH_TIMEOUT:g}s: check access to Maven Central"
        ) from exc
    jars = sorted(p.name for p in directory.glob("*.jar")) if directory.is_dir() else []
    if result.returncode != 0 or not jars:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise RuntimeSetupError(
            f"could not fetch {artifact.title} jars (mvn exit code {result.returncode}); check access "
            f"to Maven Central or the mirror in ~/.m2/settings.xml. Maven said:\n{tail}"
        )
    (directory / MARKER).write_text("\n".join(jars) + "\n")  # last: marks the set complete
    progress(f"{artifact.title}: {len(jars)} jars ready in {time.monotonic() - started:.1f}s")


def artifact_dir(artifact: Artifact, progress: Callable[[str], None] = print) -> Path:
    """The complete cache directory of `artifact`, fetching it first if needed."""
    cache = jar_cache_dir()
    directory = cache / artifact.cache_name
    if _is_complete(directory):
        return directory
    with _cache_lock(cache):
        if not _is_complete(directory):  # another process may have fetched it while we waited
            _fetch(artifact, directory, progress)
    return directory


def ensure_jars(progress: Callable[[str], None] = print) -> Jars:
    """Classpaths of the pinned Kafka and Hazelcast jars; fetched on first use, instant afterwards.

    Blocking (runs Maven on first use): from async code call it via `asyncio.to_thread`.
    """
    kafka = artifact_dir(KAFKA, progress)
    hazelcast = artifact_dir(HAZELCAST, progress)
    return Jars(kafka_classpath=str(kafka / "*"), hazelcast_classpath=str(hazelcast / "*"))
