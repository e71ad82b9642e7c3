#!/usr/bin/env python3
"""flashgpt serve against the official `openai` Python client (run by CTest).

Starts `flashgpt serve --port 0` on stories260K (CPU device) and checks
completions and chat, streamed and not, against `flashgpt generate` (the
library's own generation loop) for greedy requests; every refused request
(400/401/404/405/413/429) with its OpenAI error object; a client that
disconnects mid-stream; /health, /v1/models and /metrics; a bounded load
test (64 concurrent streams, each equal to the same request served alone,
no requests left and no memory growth afterwards); and that SIGTERM exits 0
without sanitizer reports (the ASan CI build runs this same test).

Exit status 77 (CTest's SKIP_RETURN_CODE) when the build has no server or
the `openai` package is missing: .ci/run makes a venv with it and points
FG_SERVE_PYTHON at its python, which this script re-runs itself under.
A Criterion-style JSON report goes to --report for scripts/test-summary.
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
CTX = 256


def write_report(path, passed, failed, skipped, messages):
    if not path:
        return
    # the fields and line layout scripts/test-summary reads
    lines = ["{", f'  "passed": {passed},', f'  "failed": {failed},', '  "errored": 0,',
             f'  "skipped": {skipped},', '  "test_suites": [']
    if skipped:
        lines += ['    "status": "SKIPPED",', '    "messages": [' + json.dumps(messages[0]) + "]"]
    lines += ["  ]", "}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def skip(args, why):
    print(f"SKIP: {why}")
    write_report(args.report, 0, 0, 1, [why])
    sys.exit(SKIP)


class Server:
    """One `flashgpt serve` process on a free loopback port."""

    def __init__(self, args, *extra, env=None):
        self.err = tempfile.TemporaryFile(mode="w+")
        cmd = [args.flashgpt, "serve", "-m", args.model, "--port", "0", "--device", "cpu",
               "--threads", "1", "--ctx", str(CTX), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"listening on http://[^ ]*:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.proc.kill()
            self.err.seek(0)
            raise RuntimeError("the server did not start: " + self.err.read())

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signals the server; returns (exit status, its stderr)."""
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.proc.stdout.close()
        self.err.seek(0)
        return rc, self.err.read()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def request(port, method, path, body=None, headers=None):
    """Raw HTTP: (status, parsed JSON or text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data.decode("utf-8", "replace")


def metrics(port, headers=None):
    status, text = request(port, "GET", "/metrics", headers=headers)
    assert status == 200, status
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def check_error(status, body, want_status, want_param=None, want_code=None):
    assert status == want_status, (status, body)
    assert isinstance(body, dict) and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if want_param is not None:
        assert body["error"]["param"] == want_param, body
    if want_code is not None:
        assert body["error"]["code"] == want_code, body


def generate_reference(args, prompt, n):
    """The text `flashgpt generate` makes greedily (it echoes the prompt)."""
    out = subprocess.run([args.flashgpt, "generate", "-m", args.model, "-p", prompt, "-n", str(n),
                          "--temperature", "0", "--device", "cpu", "--threads", "1",
                          "--ctx", str(CTX)], capture_output=True, text=True, timeout=60, check=True)
    text = out.stdout
    assert text.startswith(prompt) and text.endswith("\n"), repr(text)
    return text[len(prompt):-1]


PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went", "One day, a bird",
           "The sun was", "A big red ball", "Mom said", "In the park"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flashgpt", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--no-server", action="store_true", help="the build has no HTTP server")
    ap.add_argument("--report", help="Criterion-style JSON report for scripts/test-summary")
    ap.add_argument("--sanitized", action="store_true",
                    help="an ASan build: its quarantine holds freed memory, so RSS is not checked")
    args = ap.parse_args()
    if os.environ.get("FG_MODELS_DIR"):  # as the C tests: the models folder at run time
        args.model = os.path.join(os.environ["FG_MODELS_DIR"], "stories260K", "stories260K.bin")
    if args.no_server:
        skip(args, "flashgpt was built without libmicrohttpd (no server)")
    try:
        import openai
    except ImportError:
        py = os.environ.get("FG_SERVE_PYTHON")
        if py and os.path.exists(py) and not os.environ.get("FG_SERVE_REEXEC"):
            os.environ["FG_SERVE_REEXEC"] = "1"
            os.execv(py, [py] + sys.argv)
        skip(args, "the openai package is missing (set FG_SERVE_PYTHON to a venv's python with it)")
    if not os.path.exists(args.model):
        skip(args, f"no model at {args.model}")

    results = []
    t0 = time.time()

    def run(name, fn, *a):
        start = time.time()
        try:
            fn(*a)
            results.append((name, None))
            print(f"[PASS] {name} ({time.time() - start:.1f} s)", flush=True)
        except Exception as exc:  # report every failure, then go on
            import traceback
            traceback.print_exc()
            results.append((name, repr(exc)))
            print(f"[FAIL] {name}: {exc!r}", flush=True)

    a = Server(args, "--max-batch", "4")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{a.port}/v1", api_key="unused",
                           max_retries=0, timeout=60)
    model = client.models.list().data[0].id

    def t_models_health():
        ids = [m.id for m in client.models.list().data]
        assert ids == ["stories260K"], ids
        assert request(a.port, "GET", "/health") == (200, {"status": "ok"})

    def t_completion_matches_generate():
        for prompt, n in [("Once upon a time", 40), ("The little dog", 12)]:
            want = generate_reference(args, prompt, n)
            r = client.completions.create(model=model, prompt=prompt, max_tokens=n, temperature=0)
            c = r.choices[0]
            assert c.text == want, (c.text, want)
            assert c.finish_reason == ("length" if r.usage.completion_tokens == n else "stop")
            assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens <= n
            assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
            # streamed: the same text, the finish reason in the last choice, usage at the end
            parts, finish, usage = [], None, None
            for chunk in client.completions.create(model=model, prompt=prompt, max_tokens=n,
                                                   temperature=0, stream=True,
                                                   stream_options={"include_usage": True}):
                if chunk.usage is not None:
                    usage = chunk.usage
                for ch in chunk.choices:
                    parts.append(ch.text)
                    finish = ch.finish_reason or finish
            assert "".join(parts) == want, ("".join(parts), want)
            assert finish == c.finish_reason and usage is not None
            assert usage.completion_tokens == r.usage.completion_tokens

    def t_chat():
        msgs = [{"role": "system", "content": "You tell stories."},
                {"role": "user", "content": "Tell me about a cat."}]
        r = client.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0)
        c = r.choices[0]
        assert c.message.role == "assistant" and c.message.content, r
        assert c.finish_reason in ("stop", "length")
        # the documented plain rendering, as a completion, gives the same text
        rendered = "system: You tell stories.\nuser: Tell me about a cat.\nassistant:"
        rc = client.completions.create(model=model, prompt=rendered, max_tokens=24, temperature=0)
        assert rc.choices[0].text == c.message.content
        parts, roles, finish = [], [], None
        for chunk in client.chat.completions.create(model=model, messages=msgs, max_tokens=24,
                                                    temperature=0, stream=True):
            for ch in chunk.choices:
                if ch.delta.role:
                    roles.append(ch.delta.role)
                parts.append(ch.delta.content or "")
                finish = ch.finish_reason or finish
        assert roles == ["assistant"] and "".join(parts) == c.message.content
        assert finish == c.finish_reason

    def t_stop_and_seed():
        base = client.completions.create(model=model, prompt="Once upon a time", max_tokens=40,
                                         temperature=0).choices[0].text
        stop = base[15:19]
        assert stop.strip(), base
        r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=40,
                                      temperature=0, stop=[stop, "zzzz"])
        assert r.choices[0].text == base[:base.index(stop)] and r.choices[0].finish_reason == "stop"
        streamed = "".join(ch.choices[0].text for ch in client.completions.create(
            model=model, prompt="Once upon a time", max_tokens=40, temperature=0, stop=stop,
            stream=True) if ch.choices)
        assert streamed == r.choices[0].text, (streamed, r.choices[0].text)
        kw = dict(model=model, prompt="The sun was", max_tokens=30, temperature=1.0, top_p=0.9)
        one = client.completions.create(seed=42, **kw).choices[0].text
        two = client.completions.create(seed=42, **kw).choices[0].text
        other = [client.completions.create(seed=s, **kw).choices[0].text for s in (1, 2, 3)]
        assert one == two and any(o != one for o in other), (one, two, other)
        top1 = client.completions.create(model=model, prompt="The sun was", max_tokens=20,
                                         temperature=1.0, seed=7, extra_body={"top_k": 1})
        greedy = client.completions.create(model=model, prompt="The sun was", max_tokens=20,
                                           temperature=0)
        assert top1.choices[0].text == greedy.choices[0].text

    def t_errors():
        p = a.port
        post = lambda body, path="/v1/completions", **kw: request(p, "POST", path, body, **kw)
        check_error(*post("{not json"), 400, None, "invalid_json")
        check_error(*post("[1, 2]"), 400)
        check_error(*post(""), 400)
        check_error(*post({"prompt": "x", "max_tokens": "10"}), 400, "max_tokens", "invalid_type")
        check_error(*post({"prompt": "x", "max_tokens": 2.5}), 400, "max_tokens")
        check_error(*post({"prompt": "x", "max_tokens": -1}), 400, "max_tokens")
        check_error(*post({"prompt": "x", "max_tokens": 0}), 400, "max_tokens")
        check_error(*post({"prompt": "x", "max_tokens": 10**12}), 400, "max_tokens")
        check_error(*post('{"prompt": "x", "max_tokens": 1e300}'), 400, "max_tokens")
        check_error(*post({"prompt": "x", "temperature": "hot"}), 400, "temperature")
        check_error(*post({"prompt": "x", "temperature": -1}), 400, "temperature")
        check_error(*post({"prompt": "x", "top_p": 0}), 400, "top_p")
        check_error(*post({"prompt": "x", "stream": "yes"}), 400, "stream")
        check_error(*post({"prompt": "x", "stop": 5}), 400, "stop")
        check_error(*post({"prompt": "x", "stop": ["a", 1]}), 400, "stop")
        check_error(*post({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}), 400, "stop")
        check_error(*post({"prompt": "x", "n": 2}), 400, "n")
        check_error(*post({"prompt": "x", "seed": "s"}), 400, "seed")
        check_error(*post({"prompt": 5}), 400, "prompt")
        check_error(*post({"prompt": [1, 100000]}), 400, "prompt")
        check_error(*post({"prompt": "x", "model": "gpt-4"}), 400, "model", "model_not_found")
        check_error(*post({"prompt": "x", "model": 3}), 400, "model")
        check_error(*post({"prompt": "x", "stream_options": 1}), 400, "stream_options")
        check_error(*post({"prompt": "x", "logprobs": 3}), 400, "logprobs")
        long_prompt = " ".join(["once upon a time"] * 100)
        check_error(*post({"prompt": long_prompt}), 400, "prompt", "context_length_exceeded")
        check_error(*post({"prompt": "x", "max_tokens": CTX}), 400, "max_tokens",
                    "context_length_exceeded")
        chat = "/v1/chat/completions"
        check_error(*post({"messages": "hi"}, chat), 400, "messages")
        check_error(*post({"messages": []}, chat), 400, "messages")
        check_error(*post({"messages": [{"role": "cat", "content": "x"}]}, chat), 400, "messages")
        check_error(*post({"messages": [{"role": "user", "content": 3}]}, chat), 400, "messages")
        check_error(*post({"messages": [{"role": "user"}], "max_completion_tokens": -3}, chat), 400)
        check_error(*post({"prompt": "x" * (2 << 20)}), 413, None, "request_too_large")
        check_error(*request(p, "GET", "/v1/nothing"), 404)
        check_error(*request(p, "GET", "/v1/completions"), 405)
        check_error(*request(p, "POST", "/v1/models", "{}"), 405)
        # invalid UTF-8 in a prompt is text like any other
        s, body = post(b'{"prompt": "caf\xc3", "max_tokens": 3, "temperature": 0}')
        assert s in (200, 400), (s, body)
        # the client sees the same as exceptions
        try:
            client.completions.create(model="nope", prompt="x", max_tokens=2)
            raise AssertionError("an unknown model was accepted")
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body["code"] == "model_not_found", e.body
        # and the server is still there, with nothing left running
        assert request(p, "GET", "/health")[0] == 200
        m = metrics(p)
        assert m["flashgpt_http_requests_total{code=\"400\"}"] >= 30, m
        assert m["flashgpt_http_requests_total{code=\"413\"}"] == 1, m

    def load_round(refs, n_clients):
        """n_clients concurrent streams; each result compared with refs."""
        failures, lock = [], threading.Lock()

        def one(i):
            prompt, seed = refs[i % len(refs)][0]
            try:
                kw = dict(temperature=0) if seed is None else dict(temperature=0.8, seed=seed)
                parts, finish = [], None
                for chunk in client.completions.create(model=model, prompt=prompt, max_tokens=32,
                                                       stream=True, **kw):
                    for ch in chunk.choices:
                        parts.append(ch.text)
                        finish = ch.finish_reason or finish
                got = ("".join(parts), finish)
                if got != refs[i % len(refs)][1]:
                    with lock:
                        failures.append((i, got, refs[i % len(refs)][1]))
            except Exception as exc:
                with lock:
                    failures.append((i, repr(exc)))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a stream did not end"
        assert not failures, failures[:3]

    def t_load():
        keys = [(p, None) for p in PROMPTS] + [(p, 1000 + i) for i, p in enumerate(PROMPTS)]
        refs = []
        for prompt, seed in keys:  # each request alone
            kw = dict(temperature=0) if seed is None else dict(temperature=0.8, seed=seed)
            r = client.completions.create(model=model, prompt=prompt, max_tokens=32, **kw)
            refs.append(((prompt, seed), (r.choices[0].text, r.choices[0].finish_reason)))
        load_round(refs, 64)  # warms the server's allocations up
        rss0 = a.rss_kib()
        load_round(refs, 64)
        load_round(refs, 64)
        m = metrics(a.port)
        assert m["flashgpt_requests_running"] == 0 and m["flashgpt_requests_waiting"] == 0, m
        assert m["flashgpt_kv_blocks_used"] == 0, m
        assert m["flashgpt_time_to_first_token_seconds_count"] >= 192, m
        assert m["flashgpt_inter_token_latency_seconds_count"] > 0, m
        assert m["flashgpt_generation_tokens_total"] > 0 and m["flashgpt_prompt_tokens_total"] > 0
        grown = a.rss_kib() - rss0
        print(f"RSS after the warm-up round {rss0} KiB, grown by {grown} KiB over two more")
        if not args.sanitized:  # LeakSanitizer checks the ASan build at exit instead
            assert grown < 8192, f"RSS grew by {grown} KiB"

    run("models and health", t_models_health)
    run("completions equal flashgpt generate, streamed or not", t_completion_matches_generate)
    run("chat completions", t_chat)
    run("stop strings, seeds, top_k", t_stop_and_seed)
    run("bad requests get OpenAI errors", t_errors)
    run("64 concurrent streams", t_load)

    # A slowed server (a pause per round of turns) with a key, one session and
    # one queue place: holds requests running long enough to queue behind.
    b = Server(args, "--max-batch", "1", "--max-queue", "1", "--api-key", "sekret",
               "--grace", "0", env={"FLASHGPT_SERVE_TURN_DELAY_MS": "20"})
    auth = {"Authorization": "Bearer sekret"}

    def open_stream(max_tokens):
        c = http.client.HTTPConnection("127.0.0.1", b.port, timeout=60)
        c.request("POST", "/v1/completions", json.dumps(
            {"prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0,
             "stream": True}), {**auth, "Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200, r.status
        line = r.readline()  # through the chunked encoding
        while line.strip() == b"" or line.startswith(b":"):
            line = r.readline()
        assert line.startswith(b"data: {"), line
        return c, r

    def wait_metrics(pred, what, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = metrics(b.port, auth)
            if pred(m):
                return m
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {m}")

    def t_api_key():
        check_error(*request(b.port, "GET", "/v1/models"), 401, None, "invalid_api_key")
        check_error(*request(b.port, "GET", "/v1/models", headers={"Authorization": "Bearer no"}), 401)
        check_error(*request(b.port, "POST", "/v1/completions", {"prompt": "x"},
                            headers={"Authorization": "sekret"}), 401)
        check_error(*request(b.port, "GET", "/metrics"), 401)
        assert request(b.port, "GET", "/health")[0] == 200  # liveness needs no key
        kc = openai.OpenAI(base_url=f"http://127.0.0.1:{b.port}/v1", api_key="sekret", max_retries=0)
        r = kc.completions.create(model="stories260K", prompt="Hi", max_tokens=2, temperature=0)
        assert r.usage.completion_tokens >= 1
        try:
            openai.OpenAI(base_url=f"http://127.0.0.1:{b.port}/v1", api_key="wrong",
                          max_retries=0).models.list()
            raise AssertionError("a wrong key was accepted")
        except openai.AuthenticationError as e:
            assert e.status_code == 401

    def t_queue_full_and_disconnect():
        c1, r1 = open_stream(200)  # running: 200 turns of >= 20 ms
        done = {}
        waiter = threading.Thread(target=lambda: done.update(r=request(
            b.port, "POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 3, "temperature": 0},
            auth)))
        waiter.start()
        wait_metrics(lambda m: m["flashgpt_requests_waiting"] == 1, "a waiting request")
        check_error(*request(b.port, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2},
                             auth), 429, None, "queue_full")
        before = metrics(b.port, auth)["flashgpt_requests_finished_total{reason=\"cancelled\"}"]
        r1.close()  # the client goes away mid-stream
        c1.close()
        wait_metrics(lambda m: m["flashgpt_requests_finished_total{reason=\"cancelled\"}"] == before + 1,
                     "the cancelled stream")
        waiter.join(30)
        assert done["r"][0] == 200, done
        m = wait_metrics(lambda m: m["flashgpt_requests_running"] + m["flashgpt_requests_waiting"] == 0,
                         "an idle engine")
        assert m["flashgpt_kv_blocks_used"] == 0, m

    run("the api key", t_api_key)
    run("queue full and a client that disconnects", t_queue_full_and_disconnect)

    def t_sigterm():
        # a stream in flight when SIGTERM comes ends (cancelled, --grace 0) and
        # the server exits 0; then the first server the same way
        c, r = open_stream(200)
        rest = {}
        reader = threading.Thread(target=lambda: rest.update(body=r.read()))
        reader.start()
        rc, err = b.stop()
        reader.join(30)
        c.close()
        assert rc == 0, (rc, err)
        assert rest["body"].rstrip().endswith(b"data: [DONE]"), rest
        assert b'"error"' in rest["body"], rest
        assert "Sanitizer" not in err and "runtime error" not in err, err
        rc, err = a.stop(signal.SIGINT)
        assert rc == 0, (rc, err)
        assert "Sanitizer" not in err and "runtime error" not in err, err

    run("SIGTERM and SIGINT exit 0 with no leaks", t_sigterm)
    for s in (a, b):
        if s.proc.poll() is None:
            s.proc.kill()
    failed = [n for n, e in results if e]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed in {time.time() - t0:.1f} s")
    write_report(args.report, len(results) - len(failed), len(failed), 0, [])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
