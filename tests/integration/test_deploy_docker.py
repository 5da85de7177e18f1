"""docker/Dockerfile and docker/compose.yaml checked with what runs here (Docker does not): every
path the Dockerfile copies exists and is in the build context, every package it installs exists
in apt, the runtime packages cover every library the binary links, the build stage's steps run
as plain shell (configure, build, install into a staging root), the image's entry point and
health check work on what they installed, and the compose file parses and references files,
images, services, ports and the publish key consistently."""
import fnmatch
import os
import re
import shlex
import signal
import socket
import subprocess

import pytest
import requests
import yaml

from herald_test import REPO_ROOT, wait_until
from herald_test.nginx import nginx_test

# Files, tools and docs, not a server path a sanitizer could check: the Release pass only.
pytestmark = pytest.mark.release_only

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
COMPOSE = REPO_ROOT / "docker" / "compose.yaml"
PRODUCTION = yaml.safe_load((REPO_ROOT / "config" / "herald.production.yaml").read_text())
# Kept between runs (ignored by git and by .dockerignore) so the build is incremental.
BUILD_DIR = REPO_ROOT / "build-docker"


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(stage name, [(INSTRUCTION, arguments)])] with line continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            out.append((m.group(2) or m.group(1), []))
        out[-1][1].append((word, rest.strip()))
    return out


def dockerignore() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def ignored(path: str) -> bool:
    for pat in dockerignore():
        pat = pat.rstrip("/")
        if pat.startswith("**/"):
            if any(fnmatch.fnmatch(part, pat[3:]) for part in path.split("/")):
                return True
        elif fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.split("/")[0], pat):
            return True
    return False


def apt_available(pkg: str) -> bool:
    return subprocess.run(["apt-cache", "show", pkg], capture_output=True, timeout=60).returncode == 0


def runtime_packages() -> list[str]:
    runtime = stages()[-1][1]
    runs = " ".join(a for w, a in runtime if w == "RUN")
    m = re.search(r"apt-get install ((?:-\S+\s+)*)(.*?)(?:&&|$)", runs)
    assert m, "the runtime stage installs no packages with apt-get install"
    return [p for p in m.group(2).split() if not p.startswith("-")]


def build_stage_packages(tmp_path) -> list[str]:
    """What `scripts/install-deps.sh build` installs on a machine with nothing installed: run
    with a dpkg-query that finds nothing and an apt-get that only records its arguments."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    log = tmp_path / "apt.log"
    (fake / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    (fake / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    (fake / "sudo").write_text("#!/bin/sh\nexec \"$@\"\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    p = subprocess.run([str(REPO_ROOT / "scripts" / "install-deps.sh"), "build"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    installs = [line.split() for line in log.read_text().splitlines() if line.startswith("install")]
    assert len(installs) == 1, log.read_text()
    return [w for w in installs[0][1:] if not w.startswith("-")]


def test_dockerfile_copies_existing_paths_inside_the_context():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    for stage, ins in stages():
        for word, args in ins:
            if word != "COPY" or args.startswith("--from"):
                continue
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (REPO_ROOT / src).exists(), f"{stage}: COPY {src}: no such path"
                if src != ".":
                    assert not ignored(src), f"{stage}: COPY {src} is excluded by .dockerignore"
    # What the build needs is in the context; what it must not carry is not.
    needed = [f for f in tracked if f.split("/")[0] in ("src", "include", "config", "scripts")
              or f == "CMakeLists.txt"]
    assert needed and not [f for f in needed if ignored(f)]
    for heavy in (".git", "build", "build-asan", "build-docker", "tests/integration/node_modules"):
        assert ignored(heavy), f".dockerignore does not exclude {heavy}"


def test_install_deps_build_installs_only_the_build_list(tmp_path):
    pkgs = build_stage_packages(tmp_path)
    assert "cmake" in pkgs and "libboost1.81-dev" in pkgs
    for extra in ("clang", "nginx", "libnginx-mod-nchan", "redis-server", "gnuplot-nox",
                  "python3-pytest", "nodejs", "npm"):
        assert extra not in pkgs, f"the build stage would install {extra}: {pkgs}"


def test_every_package_the_image_installs_exists_in_apt(tmp_path):
    if not apt_available("libc6"):
        pytest.skip("apt-cache knows no packages here (run apt-get update first)")
    pkgs = runtime_packages() + build_stage_packages(tmp_path)
    # One apt-cache call for all (each call loads the package lists, seconds); a package it shows
    # no stanza for is asked about on its own.
    shown = subprocess.run(["apt-cache", "show", *pkgs], capture_output=True, text=True,
                           timeout=120)
    found = set(re.findall(r"^Package: (\S+)$", shown.stdout, re.M))
    missing = [p for p in pkgs if p not in found and not apt_available(p)]
    assert not missing, f"not in apt: {missing}"


def test_runtime_packages_cover_every_library_the_binary_links():
    """ldd of the binary, each library mapped to its Debian package: the runtime stage installs
    it, or it comes with every Debian image (apt depends on it)."""
    from herald_test.server import herald_bin
    out = subprocess.run(["ldd", herald_bin()], capture_output=True, text=True, check=True).stdout
    libs = [m.group(1) for m in re.finditer(r"=> (/\S+)", out)]
    owners = set()
    for lib in libs:
        real = os.path.realpath(lib)
        p = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
        if p.returncode != 0:  # merged /usr: dpkg knows the /lib path
            p = subprocess.run(["dpkg", "-S", real.replace("/usr/lib/", "/lib/", 1)],
                               capture_output=True, text=True)
        if "-san" in real or "asan" in real or "tsan" in real or "ubsan" in real:
            continue  # a sanitizer build's runtime, not the image's
        assert p.returncode == 0, f"no package owns {real}"
        owners.add(p.stdout.split(":")[0])
    apt_deps = subprocess.run(["apt-cache", "depends", "apt"], capture_output=True, text=True).stdout
    base = set(re.findall(r"Depends: (\S+)", apt_deps)) or {"libc6", "libgcc-s1", "libstdc++6"}
    missing = owners - set(runtime_packages()) - base
    assert not missing, f"the runtime stage does not install {missing}"


def test_build_stage_steps_run_as_shell_and_the_image_entry_point_works(tmp_path):
    """The build stage's RUN steps after `COPY . .`, with /src = this checkout, /build =
    build-docker/ and /install = a temp root; then the runtime stage's COPY --from sources exist
    there, and its ENTRYPOINT and HEALTHCHECK run on them."""
    build, runtime = stages()[0][1], stages()[-1][1]
    staged = tmp_path / "install"

    def local(cmd: str) -> str:
        cmd = re.sub(r"(?<![\w/.-])/build\b", str(BUILD_DIR), cmd)
        return re.sub(r"(?<![\w/.-])/install\b", str(staged), cmd)

    after_copy = False
    for word, args in build:
        if word == "COPY" and args.split()[0] == ".":
            after_copy = True
        elif word == "RUN" and after_copy:
            p = subprocess.run(["sh", "-c", local(args)], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=1500)
            assert p.returncode == 0, f"RUN {args}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert after_copy, "no COPY . . in the build stage"

    copied = {}
    for word, args in runtime:
        if word == "COPY" and args.startswith("--from=build"):
            src, dest = shlex.split(args)[1:]
            assert (staged / src.lstrip("/").removeprefix("install/")).exists(), f"COPY {args}"
            copied[dest] = staged / src.lstrip("/").removeprefix("install/")

    entry = next(yaml.safe_load(a) for w, a in runtime if w == "ENTRYPOINT")
    # The entry point's paths resolved in the staging root.
    argv = []
    for a in entry:
        for dest, where in copied.items():
            if a == dest or a.startswith(dest + "/"):
                a = str(where) + a[len(dest):]
        argv.append(a)
    assert os.access(argv[0], os.X_OK), argv
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HERALD_PUBLISH_KEYS": "docker-test-key-0123456789",
           "HERALD_LISTEN": f"127.0.0.1:{port}"}
    # Without the publish key the locked config refuses to start, with a clear message.
    no_key = {k: v for k, v in env.items() if k != "HERALD_PUBLISH_KEYS"}
    p = subprocess.run(argv, env=no_key, capture_output=True, text=True, timeout=20)
    assert p.returncode == 2 and "HERALD_PUBLISH_KEYS" in p.stdout + p.stderr, (p.returncode, p.stderr)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _healthy(port), 10, what="the image's entry point answering /healthz")
        health = next(a for w, a in runtime if w == "HEALTHCHECK")
        cmd = health.split(" CMD ", 1)[1]
        h = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, timeout=10)
        assert h.returncode == 0, (cmd, h.stdout, h.stderr)
        # Publishing is locked: no key, 401; with the key from the environment, not 401.
        r = requests.post(f"http://127.0.0.1:{port}/publish/t", data="x", timeout=5)
        assert r.status_code == 401, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert any(w == "USER" and a != "root" for w, a in runtime), "the image runs as root"


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


# --------------------------------------------------------------------------- compose

def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_parses_and_references_what_exists():
    c = compose()
    services = c["services"]
    assert {"redis", "herald1", "herald2", "nginx"} <= set(services)
    builders = [n for n, s in services.items() if "build" in s]
    assert builders == ["herald1"], f"the image is built by {builders}: once is enough"
    b = services["herald1"]["build"]
    context = (COMPOSE.parent / b["context"]).resolve()
    assert context == REPO_ROOT and (context / b["dockerfile"]).resolve() == DOCKERFILE
    assert services["herald2"]["image"] == services["herald1"]["image"]
    assert services["herald2"].get("pull_policy") == "never"
    for name, s in services.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            assert (COMPOSE.parent / src).exists(), f"{name}: volume {src} does not exist"
        for dep in s.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"
        mode = s.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.split(":", 1)[1] in services
            assert "ports" not in s, f"{name} shares a namespace and cannot publish ports"
        for port in s.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host"
        for net in s.get("networks", []):
            assert net in c.get("networks", {}), f"{name}: unknown network {net}"


def test_compose_matches_the_production_config_and_nginx_config(tmp_path):
    c = compose()
    s = c["services"]
    key_env = PRODUCTION["auth"]["publish_keys_env"]
    assert PRODUCTION["auth"].get("allow_unauthenticated_publish") is False
    assert "*" not in PRODUCTION["origins"]["allow"]
    for h in ("herald1", "herald2"):
        env = s[h]["environment"]
        assert key_env in env and ":?" in env[key_env], f"{h} must require {key_env}"
        assert "command" not in s[h] and "entrypoint" not in s[h], f"{h} must run the image's config"
    # The example in the comment publishes with that key, through the published nginx port.
    host_port = s["nginx"]["ports"][0].split(":")[1]
    comments = "\n".join(x for x in COMPOSE.read_text().splitlines() if x.startswith("#"))
    assert f'curl -H "Authorization: Bearer ${key_env}" -d hello localhost:{host_port}/publish/news' \
        in comments
    assert f"export {key_env}=" in comments
    # herald1 listens where the production config says, herald2 where HERALD_LISTEN says;
    # nginx's upstreams are exactly those, Redis is where the production config looks.
    listens = {PRODUCTION["listen"], s["herald2"]["environment"]["HERALD_LISTEN"]}
    conf = (REPO_ROOT / "docker" / "nginx.conf").read_text()
    upstreams = set(re.findall(r"^\s*server (\S+) ", conf, re.M))
    assert upstreams == listens, (upstreams, listens)
    assert PRODUCTION["redis"]["shards"] == ["127.0.0.1:6379"]
    assert "--bind" in s["redis"]["command"] and "127.0.0.1" in s["redis"]["command"]
    assert re.search(rf"^\s*listen {host_port.split(':')[-1]};", conf, re.M) or \
        re.search(rf"^\s*listen 0\.0\.0\.0:{host_port};", conf, re.M), "nginx listens elsewhere"
    # The gateway docker hands the host's connections from may publish.
    gw = c["networks"]["herald"]["ipam"]["config"][0]["gateway"]
    assert conf.count(f"allow {gw};") == 3
    # docker/nginx.conf is what `make docker-config` renders now, and nginx accepts it.
    recipe = re.search(r"^docker-config:\n\t(.+)$", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)
    render = recipe.rsplit(">", 1)[0]
    now = subprocess.run(["sh", "-c", render], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert now == conf, "docker/nginx.conf is stale: run make docker-config"
    local = conf.replace("/var/cache/nginx", str(tmp_path)).replace("listen 8080;", "listen 127.0.0.1:1;")
    (tmp_path / "nginx.conf").write_text(local)
    p = nginx_test(tmp_path / "nginx.conf", tmp_path, "-e", str(tmp_path / "e.log"))
    assert p.returncode == 0, p.stderr
