"""Several instances of the service behind nginx, as operators run them: S3 storage, Redis locks, one address.

Everything listens on 127.0.0.1 on free ports. nginx is the Debian binary with a config written here from the
same directives as ``deploy/nginx.conf`` (round robin, no request buffering, body size, timeouts, forwarded
headers, an Idempotency-Key on every PUT and DELETE); it also names the instance that answered in ``X-Upstream`` so
tests can see where requests went.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .redis_server import RedisServer
from .s3 import Bucket
from .servers import ROOT, TOKENS, Server, free_port, start_server, tls, wait_until_up

LOG_FORMAT = "$request_method|$uri|$status|$upstream_addr|$upstream_status"  # what Nginx.access_log reads
NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format upstream '{log_format}';
    access_log {root}/access.log upstream;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    map $request_method $retried_key {{
        PUT     $request_id;
        DELETE  $request_id;
        default "";
    }}
    map $http_idempotency_key $idempotency_key {{
        ""      $retried_key;
        default $http_idempotency_key;
    }}
    upstream upload_service {{
{servers}
        keepalive 64;
        keepalive_timeout 4s;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_next_upstream error timeout;
        proxy_set_header Idempotency-Key $idempotency_key;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_connect_timeout 5s;
        proxy_send_timeout 120s;
        proxy_read_timeout 120s;
        client_body_timeout 120s;
        add_header X-Upstream $upstream_addr always;
        location / {{ {directives}proxy_pass http://upload_service; }}
    }}
}}
"""


def deployed_nginx_conf(root: Path, upstreams: list[str], port: int) -> str:
    """``deploy/nginx.conf`` as shipped, with only what a test must change: its instances (``upstreams``), its
    port, one worker, and nginx's own files (pid, logs, temp paths) in ``root``, the access log as ``Nginx`` reads
    it (with the instances each request was sent to)."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = "".join(f"server {address} max_fails=1 fail_timeout=5s;\n        " for address in upstreams)
    conf, found = re.subn(r"server service-\d+:8000 max_fails=1 fail_timeout=5s;\s*", "", conf)
    assert found, "deploy/nginx.conf names its instances differently now"
    conf = conf.replace("keepalive 64;", servers + "keepalive 64;", 1)
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    own = ("user root; " if os.geteuid() == 0 else "") + f"pid {root}/nginx.pid; error_log {root}/error.log warn;"
    conf = conf.replace("worker_processes auto;", f"worker_processes 1; {own}")
    paths = " ".join(f"{kind}_temp_path {root}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                      "scgi"))
    log = f"log_format upstream '{LOG_FORMAT}'; access_log {root}/access.log upstream;"
    return conf.replace("http {", f"http {{ {log} {paths}", 1)


@dataclass
class Nginx:
    """Debian's nginx in the foreground with its own prefix directory, logs and temp paths."""

    url: str
    root: Path
    process: subprocess.Popen

    @classmethod
    def start(cls, root: Path, upstreams: list[str], directives: str = "") -> Nginx:
        """``directives``: more of them for ``location /``, overriding the server's (a test's variation)."""
        root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        servers = "\n".join(f"        server {address} max_fails=1 fail_timeout=5s;" for address in upstreams)
        user = "user root;" if os.geteuid() == 0 else ""  # workers must reach this private directory
        return cls._run(root, port, NGINX_CONF.format(user=user, root=root, servers=servers, port=port,
                                                      directives=directives, log_format=LOG_FORMAT))

    @classmethod
    def deployed(cls, root: Path, upstreams: list[str]) -> Nginx:
        """nginx with ``deploy/nginx.conf`` as shipped (``deployed_nginx_conf``)."""
        root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        return cls._run(root, port, deployed_nginx_conf(root, upstreams, port), "-g", "daemon off;")

    @classmethod
    def _run(cls, root: Path, port: int, text: str, *options: str) -> Nginx:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
        conf = root / "nginx.conf"
        conf.write_text(text)
        process = subprocess.Popen([binary, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log"),
                                    *options], stdout=(root / "nginx.out").open("wb"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/healthz", process)
        return cls(url, root, process)

    def access_log(self) -> list[tuple[str, str, int, str]]:
        """(method, path, status, upstream addresses) of every request nginx answered."""
        lines = (self.root / "access.log").read_text().splitlines()
        return [(method, path, int(status), upstream) for method, path, status, upstream, _ in
                (line.split("|") for line in lines)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Cluster:
    """Three (or ``size``) instances on one bucket and one Redis, with nginx in front at ``url``."""

    nginx: Nginx
    instances: list[Server]
    bucket: Bucket
    killed: list[str] = field(default_factory=list)
    clients: list[httpx.Client] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, redis: RedisServer, bucket: Bucket, size: int = 3, **settings: str) -> Cluster:
        shared = {**bucket.settings(), "locker": "redis", "redis_url": redis.url, "redis_lock_ttl": "3s",
                  "forwarded_allow_ips": "127.0.0.1", **settings}
        instances: list[Server] = []
        try:
            for number in range(size):
                folder = root / f"instance-{number}"
                folder.mkdir(parents=True)
                instances.append(start_server(folder, **shared))
            nginx = Nginx.start(root / "nginx", [server.url.removeprefix("http://") for server in instances])
        except Exception:
            for server in instances:
                server.stop()
            raise
        return cls(nginx, instances, bucket)

    @property
    def url(self) -> str:
        return self.nginx.url

    def client(self, user: str = "alice", **options) -> httpx.Client:
        client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKENS[user]}"}, timeout=60,
                              **{"verify": tls(), **options})
        self.clients.append(client)
        return client

    def address(self, server: Server) -> str:
        return server.url.removeprefix("http://")

    def kill(self, server: Server) -> None:
        """SIGKILL: no shutdown, no cleanup, locks left in Redis until they expire."""
        self.killed.append(self.address(server))
        server.process.kill()
        server.process.wait()

    def server_errors(self) -> list[tuple[str, str, int, str]]:
        """5xx answers that did not come from an instance that was killed (its requests in flight may fail)."""
        return [entry for entry in self.nginx.access_log()
                if entry[2] >= 500 and not any(address in entry[3] for address in self.killed)]

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.nginx.stop()
        for server in self.instances:
            server.stop()
