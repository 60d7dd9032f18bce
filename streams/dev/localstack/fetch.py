"""Fetch the stack's Java artifacts from Maven Central with Maven itself.

Kafka is not one jar but ``kafka_2.13`` and its dependency tree, which only a dependency resolver
can assemble faithfully; Apicurio Registry publishes its Quarkus application as an ``all`` zip.
Keycloak, the secure stack's identity server, publishes its distribution as a zip too.
Everything, Maven's own local repository included, goes under the cache folder so that the cache
is self-contained and its size is the stack's footprint.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

from streams.dev.localstack.errors import StackError

_KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fr.gouv.circulation.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
"""

_COMPLETE = ".complete"


def _maven(args: list[str], cache_dir: Path, timeout: float, what: str) -> None:
    """Run Maven in batch mode against the cache's own local repository."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven ('mvn') is not on PATH; it is needed to fetch " + what)
    command = [mvn, "-B", "-q", f"-Dmaven.repo.local={cache_dir / 'm2'}", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"fetching {what} from Maven Central took over {timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise StackError(f"could not fetch {what} from Maven Central:\n{tail}")


def kafka_classpath(cache_dir: Path, version: str, timeout: float) -> str:
    """Return Kafka ``version``'s runtime class path, resolving it once.

    The jars stay in the cache's Maven repository; only the resolved class path is kept, so
    nothing is stored twice.
    """
    home = cache_dir / f"kafka-{version}"
    classpath_file = home / "classpath.txt"
    if (home / _COMPLETE).exists():
        return classpath_file.read_text(encoding="utf-8").strip()
    home.mkdir(parents=True, exist_ok=True)
    pom = home / "pom.xml"
    pom.write_text(_KAFKA_POM.format(version=version), encoding="utf-8")
    try:
        _maven(
            ["-f", str(pom), "dependency:build-classpath",
             f"-Dmdep.outputFile={classpath_file}", "-Dmdep.includeScope=runtime"],
            cache_dir, timeout, f"Apache Kafka {version} (org.apache.kafka:kafka_2.13)",
        )
    except StackError:
        shutil.rmtree(home, ignore_errors=True)  # no half-fetched version left in the cache
        raise
    (home / _COMPLETE).touch()
    return classpath_file.read_text(encoding="utf-8").strip()


def registry_app(cache_dir: Path, version: str, timeout: float) -> Path:
    """Return the Apicurio Registry runner jar for ``version``, fetching and unpacking it once."""
    home = cache_dir / f"apicurio-registry-{version}"
    runner = home / f"apicurio-registry-app-{version}-runner.jar"
    if (home / _COMPLETE).exists():
        return runner
    _unpack_zip(cache_dir, home, ("io.apicurio", "apicurio-registry-app", version, "all"),
                f"Apicurio Registry {version}", timeout)
    if not runner.exists():
        raise StackError(f"the Apicurio Registry {version} bundle has no {runner.name}")
    (home / _COMPLETE).touch()
    return runner


def identity_server_dist(cache_dir: Path, version: str, timeout: float) -> Path:
    """Return Keycloak ``version``'s unpacked distribution folder, fetching it once.

    The folder is shared by every run folder (like the other jars): nothing a stack writes goes
    there, only the one-time build of its server configuration (see ``identity.py``).
    """
    home = cache_dir / f"keycloak-{version}"
    dist = home / f"keycloak-{version}"
    if (home / _COMPLETE).exists():
        return dist
    _unpack_zip(cache_dir, home, ("org.keycloak", "keycloak-quarkus-dist", version, None),
                f"Keycloak {version}", timeout)
    if not (dist / "lib" / "quarkus-run.jar").exists():
        raise StackError(f"the Keycloak {version} distribution has no lib/quarkus-run.jar")
    (home / _COMPLETE).touch()
    return dist


def _unpack_zip(cache_dir: Path, home: Path, coordinates: tuple[str, str, str, str | None],
                what: str, timeout: float) -> None:
    """Fetch a zip artifact (group, artifact, version, classifier) into a new ``home`` and
    unpack it there; the archive is then dropped, and Maven's copy of it too: the unpacked
    folder is all the stack runs. A failed fetch leaves no half-filled ``home``."""
    group, artifact_id, version, classifier = coordinates
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    artifact = f"{group}:{artifact_id}:{version}:zip" + (f":{classifier}" if classifier else "")
    try:
        _maven(["dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={home}"],
               cache_dir, timeout, f"{what} ({artifact})")
    except StackError:
        shutil.rmtree(home, ignore_errors=True)
        raise
    archive = home / f"{artifact_id}-{version}{f'-{classifier}' if classifier else ''}.zip"
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(home)
    archive.unlink()
    shutil.rmtree(cache_dir / "m2" / Path(*group.split(".")) / artifact_id, ignore_errors=True)
