"""A local HTTP server speaking the Hub endpoints huggingface_hub's client calls.

Used so tests exercise the real client code (HF_ENDPOINT points here): create repo, preupload
(every file "regular", so content travels inline and no LFS/xet storage is needed), commit
(ndjson), tree listing, model info, file resolve (HEAD/GET), YAML validation. Every request is
recorded, so tests can assert what reached the server (and what didn't, like secrets).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class HubState:
    """Repos (id → {path: bytes}), commit messages per repo, and every request seen."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    commits: dict[str, list[str]] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)


def _sha(repo: dict[str, bytes]) -> str:
    h = hashlib.sha1()
    for k in sorted(repo):
        h.update(k.encode() + hashlib.sha1(repo[k]).digest())
    return h.hexdigest()


def make_handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, code: int, body: object = b"", headers: dict | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _not_found(self, code: str) -> None:
            self._send(404, {"error": code}, {"X-Error-Code": code, "X-Error-Message": code})

        def _record(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
            return body

        def _repo_of(self, parts: list[str], start: int) -> str:
            return f"{parts[start]}/{parts[start + 1]}"

        def do_HEAD(self) -> None:
            self._record()
            self._resolve()

        def do_GET(self) -> None:
            self._record()
            parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
            if parts[:2] == ["api", "models"] and len(parts) >= 5:
                repo = self._repo_of(parts, 2)
                if repo not in state.repos:
                    return self._not_found("RepoNotFound")
                files = state.repos[repo]
                if parts[4] == "tree":
                    return self._send(
                        200,
                        [
                            {
                                "type": "file",
                                "path": p,
                                "size": len(b),
                                "oid": hashlib.sha1(b).hexdigest(),
                            }
                            for p, b in sorted(files.items())
                        ],
                    )
                if parts[4] == "revision":
                    return self._send(
                        200,
                        {
                            "id": repo,
                            "modelId": repo,
                            "sha": _sha(files),
                            "private": False,
                            "siblings": [{"rfilename": p} for p in sorted(files)],
                        },
                    )
            return self._resolve()

        def _resolve(self) -> None:
            parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
            if len(parts) >= 5 and parts[2] == "resolve":
                repo = self._repo_of(parts, 0)
                if repo not in state.repos:
                    return self._not_found("RepoNotFound")
                name = "/".join(parts[4:])
                data = state.repos[repo].get(name)
                if data is None:
                    return self._not_found("EntryNotFound")
                return self._send(
                    200,
                    data,
                    {
                        "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                        "X-Repo-Commit": _sha(state.repos[repo]),
                    },
                )
            return self._not_found("NotFound")

        def do_POST(self) -> None:
            body = self._record()
            parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
            if parts == ["api", "repos", "create"]:
                req = json.loads(body)
                repo = f"{req.get('organization') or req.get('namespace', 'user')}/{req['name']}"
                if "/" in req["name"]:
                    repo = req["name"]
                if repo in state.repos:
                    return self._send(409, {"error": "exists"}, {"X-Error-Message": "exists"})
                state.repos[repo] = {}
                return self._send(
                    200, {"url": f"http://{self.headers['Host']}/{repo}", "name": repo}
                )
            if parts == ["api", "validate-yaml"]:
                return self._send(200, {"errors": [], "warnings": []})
            if parts[:2] == ["api", "models"] and len(parts) >= 6:
                repo = self._repo_of(parts, 2)
                if repo not in state.repos:
                    return self._not_found("RepoNotFound")
                if parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                for f in files
                            ]
                        },
                    )
                if parts[4] == "commit":
                    header = None
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            header = item["value"]
                        elif item["key"] == "file":
                            v = item["value"]
                            state.repos[repo][v["path"]] = base64.b64decode(v["content"])
                    state.commits.setdefault(repo, []).append(header["summary"] if header else "")
                    oid = _sha(state.repos[repo])
                    return self._send(
                        200,
                        {
                            "commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{oid}",
                            "commitOid": oid,
                            "pullRequestUrl": None,
                        },
                    )
            return self._not_found("NotFound")

    return Handler


class FakeHub:
    """Context manager: a FakeHub server on 127.0.0.1 with its state."""

    def __init__(self) -> None:
        self.state = HubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
