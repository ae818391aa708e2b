"""A local HTTP server speaking the Hub endpoints huggingface_hub's client calls.

Used so tests exercise the real client code (HF_ENDPOINT points here): create repo, preupload
(every file "regular", so content travels inline and no LFS/xet storage is needed), commit
(ndjson: added, LFS and deleted files, `parentCommit` checked like the Hub: 412 when the
branch moved on), the LFS batch API and uploads (files of `lfs_threshold` bytes or more go
through it, as on the Hub), tree listing, repo info, file resolve (HEAD/GET), YAML
validation, for model and dataset repos; every commit is kept, so downloads pinned to a commit
get that commit's files.
It also speaks the Jobs API (whoami, run, list, inspect, cancel, logs as server-sent events),
storing each job spec as received, and refusing an unknown flavor or a timeout under one
second with a 400 as the Hub does. Every request is recorded, so tests can assert what reached
the server (and what didn't, like secrets).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

REPO_KINDS = {"models": "", "datasets": "datasets/", "spaces": "spaces/"}
"""URL segment → prefix of the repo's key in `HubState.repos` (models keep their bare id)."""


@dataclass
class HubState:
    """Repos and their history, commit messages, jobs, and every request seen.

    Repos are keyed by id for models and `datasets/<id>` for datasets; `snapshots` maps each
    repo key to {commit oid: files at that commit}. `jobs` holds what the Jobs API returns,
    `job_specs` what the client sent (secrets included), `job_logs` the lines `logs` streams.
    """

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    commits: dict[str, list[str]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    user: str = "user"
    jobs: dict[str, dict] = field(default_factory=dict)
    job_specs: dict[str, dict] = field(default_factory=dict)
    job_logs: dict[str, list[str]] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)
    lfs_threshold: int = 10_000_000
    """Files this large, or named like weights (`LFS_SUFFIXES`), go through LFS."""
    fail_repos: set[str] = field(default_factory=set)
    """Repo keys whose commits get a 500, as an outage between two commits would."""


def _sha(repo: dict[str, bytes]) -> str:
    h = hashlib.sha1()
    for k in sorted(repo):
        h.update(k.encode() + hashlib.sha1(repo[k]).digest())
    return h.hexdigest()


LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".whl")
"""What the Hub's default .gitattributes sends to LFS (the patterns this project uploads)."""


def _flavors() -> set[str]:
    from huggingface_hub import JobHardware

    return {h.value for h in JobHardware}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def make_handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, code: int, body: object = b"", headers: dict | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            if "Content-Type" not in (headers or {}):
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
                {"method": self.command, "path": self.path,
                 "headers": {k.lower(): v for k, v in self.headers.items()},
                 "body": body}
            )  # fmt: skip
            return body

        def _parts(self) -> list[str]:
            return [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]

        def _files(self, key: str, revision: str) -> dict[str, bytes]:
            """A repo's files at `revision`: a commit it saw, else the current head."""
            return state.snapshots.get(key, {}).get(revision, state.repos[key])

        def do_HEAD(self) -> None:
            self._record()
            self._resolve()

        def do_GET(self) -> None:
            self._record()
            parts = self._parts()
            if parts == ["api", "whoami-v2"]:
                return self._whoami()
            if parts[:2] == ["api", "jobs"] and len(parts) >= 3:
                return self._jobs_get(parts[2:])
            if parts[0] == "api" and len(parts) > 1 and parts[1] in REPO_KINDS and len(parts) >= 4:
                key = REPO_KINDS[parts[1]] + f"{parts[2]}/{parts[3]}"
                if key not in state.repos:
                    return self._not_found("RepoNotFound")
                if len(parts) == 4 or parts[4] == "revision":
                    rev = parts[5] if len(parts) > 5 else "main"
                    if rev != "main" and rev not in state.snapshots.get(key, {}):
                        return self._not_found("RevisionNotFound")
                    files = self._files(key, rev)
                    return self._send(200, {
                        "id": f"{parts[2]}/{parts[3]}", "modelId": f"{parts[2]}/{parts[3]}",
                        "sha": rev if rev != "main" else state.heads.get(key), "private": False,
                        "siblings": [{"rfilename": p} for p in sorted(files)],
                    })  # fmt: skip
                if parts[4] == "tree":
                    files = self._files(key, parts[5] if len(parts) > 5 else "main")
                    return self._send(200, [
                        {"type": "file", "path": p, "size": len(b),
                         "oid": hashlib.sha1(b).hexdigest()}
                        for p, b in sorted(files.items())
                    ])  # fmt: skip
            return self._resolve()

        def _resolve(self) -> None:
            parts = self._parts()
            prefix = f"{parts[0]}/" if parts[0] in ("datasets", "spaces") else ""
            parts = parts[1:] if prefix else parts
            if len(parts) >= 5 and parts[2] == "resolve":
                key = prefix + f"{parts[0]}/{parts[1]}"
                if key not in state.repos:
                    return self._not_found("RepoNotFound")
                files = self._files(key, parts[3])
                data = files.get("/".join(parts[4:]))
                if data is None:
                    return self._not_found("EntryNotFound")
                rev = parts[3] if parts[3] in state.snapshots.get(key, {}) else None
                return self._send(200, data, {
                    "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                    "X-Repo-Commit": rev or state.heads.get(key) or _sha(files),
                })  # fmt: skip
            return self._not_found("NotFound")

        def do_PUT(self) -> None:
            """An LFS upload (the `href` the batch API handed out): stored by its sha256."""
            body = self._record()
            parts = self._parts()
            if (
                len(parts) == 2
                and parts[0] == "lfs-upload"
                and hashlib.sha256(body).hexdigest() == parts[1]
            ):
                state.lfs[parts[1]] = body
                return self._send(200, b"")
            return self._send(400, {"error": "bad LFS upload"})

        def _lfs_batch(self, body: bytes) -> None:
            req = json.loads(body)
            host = f"http://{self.headers['Host']}"
            return self._send(200, {"transfer": "basic", "objects": [
                {"oid": o["oid"], "size": o["size"]}
                if o["oid"] in state.lfs else
                {"oid": o["oid"], "size": o["size"],
                 "actions": {"upload": {"href": f"{host}/lfs-upload/{o['oid']}"}}}
                for o in req["objects"]
            ]})  # fmt: skip

        def do_POST(self) -> None:
            body = self._record()
            parts = self._parts()
            if parts[-3:] == ["info", "lfs", "objects"] or parts[-4:] == [
                "info",
                "lfs",
                "objects",
                "batch",
            ]:
                return self._lfs_batch(body)
            if parts == ["api", "repos", "create"]:
                req = json.loads(body)
                repo = f"{req.get('organization') or req.get('namespace', 'user')}/{req['name']}"
                if "/" in req["name"]:
                    repo = req["name"]
                key = REPO_KINDS[f"{req.get('type') or 'model'}s"] + repo
                url = f"http://{self.headers['Host']}/{key}"
                if key in state.repos:  # the Hub's 409 carries the url too
                    return self._send(
                        409, {"error": "exists", "url": url}, {"X-Error-Message": "exists"}
                    )
                state.repos[key] = {}
                return self._send(200, {"url": url, "name": repo})
            if parts == ["api", "validate-yaml"]:
                return self._send(200, {"errors": [], "warnings": []})
            if parts[:2] == ["api", "jobs"] and len(parts) >= 3:
                return self._jobs_post(parts[2:], body)
            if parts[0] == "api" and parts[1] in REPO_KINDS and len(parts) >= 6:
                key = REPO_KINDS[parts[1]] + f"{parts[2]}/{parts[3]}"
                if key not in state.repos:
                    return self._not_found("RepoNotFound")
                if parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [
                        {"path": f["path"], "shouldIgnore": False,
                         "uploadMode": "lfs" if f["size"] >= state.lfs_threshold
                                        or f["path"].endswith(LFS_SUFFIXES) else "regular"}
                        for f in files
                    ]})  # fmt: skip
                if parts[4] == "commit":
                    return self._commit(key, body)
            return self._not_found("NotFound")

        def _commit(self, key: str, body: bytes) -> None:
            """Apply one commit whole, or nothing: a stale parent or unknown LFS object fails it."""
            if key in state.fail_repos:
                return self._send(500, {"error": "internal error"}, {"X-Error-Message": "outage"})
            items = [json.loads(line) for line in body.splitlines()]
            header = next((i["value"] for i in items if i["key"] == "header"), {})
            parent = header.get("parentCommit")
            if parent is not None and parent != state.heads.get(key):
                msg = "A commit has happened since. Please refresh and try again."
                return self._send(412, {"error": msg}, {"X-Error-Message": msg})
            files = dict(state.repos[key])
            for item in items:
                v = item["value"]
                if item["key"] == "file":
                    files[v["path"]] = base64.b64decode(v["content"])
                elif item["key"] == "lfsFile":
                    if v["oid"] not in state.lfs:
                        return self._send(422, {"error": f"LFS object {v['oid']} not uploaded"})
                    files[v["path"]] = state.lfs[v["oid"]]
                elif item["key"] == "deletedFile":
                    if v["path"] not in files:
                        return self._send(404, {"error": f"{v['path']} not found"})
                    del files[v["path"]]
                elif item["key"] == "deletedFolder":
                    prefix = v["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
            state.repos[key] = files
            state.commits.setdefault(key, []).append(header.get("summary", ""))
            oid = hashlib.sha1(f"{state.heads.get(key)}:{_sha(files)}".encode()).hexdigest()
            state.heads[key] = oid
            state.snapshots.setdefault(key, {})[oid] = dict(files)
            return self._send(200, {"commitUrl": f"http://{self.headers['Host']}/{key}/commit/{oid}",
                                    "commitOid": oid, "pullRequestUrl": None})  # fmt: skip

        def _authorized(self) -> bool:
            return self.headers.get("Authorization", "").startswith("Bearer hf_")

        def _whoami(self) -> None:
            if not self._authorized():
                return self._send(401, {"error": "Invalid credentials"})
            return self._send(200, {"type": "user", "name": state.user, "id": "u1"})

        def _jobs_get(self, parts: list[str]) -> None:
            """`{ns}` lists (stage/label filters), `{ns}/{id}` inspects, `…/logs` streams."""
            if not self._authorized():
                return self._send(401, {"error": "Invalid credentials"})
            if len(parts) == 1:
                query = parse_qs(urlparse(self.path).query)
                stages, labels = query.get("stage", []), query.get("label", [])
                found = [
                    job for job in state.jobs.values()
                    if job["owner"]["name"] == parts[0]
                    and (not stages or job["status"]["stage"] in stages)
                    and all(
                        (job.get("labels") or {}).get(k) == v
                        for k, _, v in (label.partition("=") for label in labels)
                    )
                ]  # fmt: skip
                return self._send(200, found)
            job = state.jobs.get(parts[1])
            if job is None or job["owner"]["name"] != parts[0]:
                return self._not_found("JobNotFound")
            if len(parts) == 2:
                return self._send(200, job)
            if parts[2] == "logs":
                started = f"===== Job started at {job['createdAt']} ====="
                lines = [started, *state.job_logs[job["id"]]]
                events = "".join(
                    f"data: {json.dumps({'data': line, 'timestamp': job['createdAt']})}\n\n"
                    for line in lines
                )
                return self._send(200, events.encode(), {"Content-Type": "text/event-stream"})
            return self._not_found("NotFound")

        def _jobs_post(self, parts: list[str], body: bytes) -> None:
            """`{ns}` runs a job (status RUNNING), `{ns}/{id}/cancel` cancels one."""
            if not self._authorized():
                return self._send(401, {"error": "Invalid credentials"})
            if len(parts) == 1:
                spec = json.loads(body)
                if spec.get("flavor") not in _flavors():
                    return self._send(400, {"error": f"Invalid flavor {spec.get('flavor')!r}"})
                timeout = spec.get("timeoutSeconds")
                if timeout is not None and (not isinstance(timeout, int) or timeout < 1):
                    return self._send(400, {"error": f"Invalid timeoutSeconds {timeout!r}"})
                job_id = secrets.token_hex(12)
                state.job_specs[job_id] = spec
                state.job_logs[job_id] = []
                state.jobs[job_id] = {
                    "id": job_id, "createdAt": _now(),
                    **{k: v for k, v in spec.items() if k != "secrets"},
                    "secrets": {k: None for k in spec.get("secrets", {})},
                    "status": {"stage": "RUNNING", "message": None},
                    "owner": {"id": "u1", "name": parts[0], "type": "user"},
                }  # fmt: skip
                return self._send(200, state.jobs[job_id])
            job = state.jobs.get(parts[1])
            if job is None or len(parts) != 3 or parts[2] != "cancel":
                return self._not_found("JobNotFound")
            job["status"] = {"stage": "CANCELED", "message": "canceled by user"}
            return self._send(200, {})

    return Handler


class FakeHub:
    """Context manager: a FakeHub server on 127.0.0.1 with its state."""

    def __init__(self) -> None:
        self.state = HubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        """Start serving; LFS goes the classic way (no Xet storage here), in- and out-of-process."""
        from huggingface_hub import constants

        self._xet = os.environ.get("HF_HUB_DISABLE_XET"), constants.HF_HUB_DISABLE_XET
        os.environ["HF_HUB_DISABLE_XET"] = "1"
        constants.HF_HUB_DISABLE_XET = True
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from huggingface_hub import constants

        env, constants.HF_HUB_DISABLE_XET = self._xet
        if env is None:
            os.environ.pop("HF_HUB_DISABLE_XET", None)
        else:
            os.environ["HF_HUB_DISABLE_XET"] = env
        self.server.shutdown()
        self.server.server_close()
