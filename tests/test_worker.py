"""The Celery worker end to end: real Redis, TorchServe and `python -m worker` processes."""
from __future__ import annotations

import base64
import contextlib
import http.server
import io
import json
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from bench.words import compose_word, png
from tests.fixtures.worker import worker_metric
from training.scans import render_scan
from worker import jobs, webhooks
from worker.celery_app import make_celery
from worker.config import WorkerConfig
from worker.queue import JobPublisher, JobWaiter, publish_jobs, submit_job, wait_for_job

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def producer(redis_server, redis_client):
    config = WorkerConfig(redis_url=redis_server.url)
    return config, make_celery(config)


def run_jobs(r, producer, images_per_job, mode="char", top_k=3, clients=16, **kw):
    config, celery = producer

    def one(images):
        return wait_for_job(r, submit_job(r, celery, config, images, mode, top_k, **kw), 120)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, images_per_job))


def confident_tiles(torchserve, sample, n=40):
    """The n tiles the model reads right most confidently, straight from TorchServe."""
    buf = io.BytesIO()
    np.save(buf, sample.images[:300])
    answers = httpx.post(f"{torchserve.url}/predictions/emnist", content=buf.getvalue(), timeout=60,
                         headers={**torchserve.headers(), "X-Top-K": "1"}).json()["results"]
    good = [i for i, a in enumerate(answers) if a["predictions"][0]["char"] == sample.classes[sample.labels[i]]]
    good.sort(key=lambda i: -answers[i]["predictions"][0]["p"])
    assert len(good) >= n, "the model reads too few tiles right to test with"
    return good[:n]


def test_char_jobs_read_scans_of_confident_tiles(celery_worker, torchserve, redis_client, producer,
                                                 emnist_test_sample):
    s = emnist_test_sample
    idx = confident_tiles(torchserve, s)
    rng = np.random.default_rng(1)
    jobs = run_jobs(redis_client, producer, [[render_scan(s.images[i], rng, jpeg=False)] for i in idx])
    right = 0
    for i, job in zip(idx, jobs):
        assert job["status"] == "succeeded", job
        (result,) = job["results"]
        char = result["characters"][0]
        assert result["text"] == char["char"] and len(result["characters"]) == 1
        assert len(char["alternatives"]) == 3 and char["confidence"] == char["alternatives"][0]["p"]
        x, y, w, h = char["box"]
        assert w > 0 and h > 0
        right += result["text"] == s.classes[s.labels[i]]
    assert right >= 0.85 * len(idx), f"{right}/{len(idx)} scans read right"


def test_text_job_reads_a_word(celery_worker, torchserve, redis_client, producer, emnist_test_sample):
    s = emnist_test_sample
    idx = confident_tiles(torchserve, s)
    rng = np.random.default_rng(2)
    words = [idx[k:k + 5] for k in range(0, 30, 5)]
    images = [compose_word([s.images[i] for i in w], rng, height=80) for w in words]
    jobs = run_jobs(redis_client, producer, [[png(img)] for img in images], mode="text")
    right = total = right_length = 0
    for w, img, job in zip(words, images, jobs):
        assert job["status"] == "succeeded", job
        (result,) = job["results"]
        # bench/words.py: about 4% of EMNIST words split one wide letter (W, M) in two.
        right_length += len(result["characters"]) == len(w)
        xs = [c["box"][0] for c in result["characters"]]
        assert xs == sorted(xs)  # left to right
        for c in result["characters"]:
            x, y, bw, bh = c["box"]
            assert 0 <= x and x + bw <= img.shape[1] and 0 <= y and y + bh <= img.shape[0]
        truth = "".join(s.classes[s.labels[i]] for i in w)
        right += sum(a == b for a, b in zip(result["text"], truth))
        total += len(truth)
    assert right_length >= len(words) - 1
    assert right >= 0.8 * total


def test_bad_and_blank_images_get_per_image_errors(celery_worker, redis_client, producer):
    blank = io.BytesIO()
    Image.new("L", (50, 50), 255).save(blank, format="PNG")
    (job,) = run_jobs(redis_client, producer, [[b"not an image", blank.getvalue()]])
    assert job["status"] == "succeeded"
    assert [r["error"]["code"] for r in job["results"]] == ["undecodable_image", "blank_image"]
    assert all(r["text"] == "" and r["characters"] == [] for r in job["results"])


def test_concurrent_jobs_share_batches(celery_worker, redis_client, producer, emnist_test_sample):
    before_n = worker_metric(celery_worker, "hwr_worker_batch_size_count")
    before_sum = worker_metric(celery_worker, "hwr_worker_batch_size_sum")
    rng = np.random.default_rng(3)
    images = [[render_scan(t, rng, jpeg=False)] for t in emnist_test_sample.images[:300]]
    jobs = run_jobs(redis_client, producer, images, clients=48)
    assert all(j["status"] == "succeeded" for j in jobs)
    batches = worker_metric(celery_worker, "hwr_worker_batch_size_count") - before_n
    tiles = worker_metric(celery_worker, "hwr_worker_batch_size_sum") - before_sum
    assert tiles == 300
    assert tiles / batches > 1.0, f"mean batch size {tiles / batches:.2f}"
    assert worker_metric(celery_worker, "hwr_worker_jobs_total") >= 300


def test_one_message_runs_several_jobs_each_with_its_own_options(celery_worker, torchserve, redis_client,
                                                                  producer, emnist_test_sample):
    config, celery = producer
    s = emnist_test_sample
    idx = confident_tiles(torchserve, s, n=5)
    rng = np.random.default_rng(4)
    word = png(compose_word([s.images[i] for i in idx[:4]], rng, height=80))
    group = [jobs.NewJob(jobs.new_job_id(), [render_scan(s.images[idx[4]], rng, jpeg=False)], "char", 1),
             jobs.NewJob(jobs.new_job_id(), [word], "text", 4),
             jobs.NewJob(jobs.new_job_id(), [b"not an image"], "char", 2)]
    publish_jobs(redis_client, celery, config, group)
    char_job, text_job, bad_job = [wait_for_job(redis_client, j.job_id, 120) for j in group]
    assert [j["status"] for j in (char_job, text_job, bad_job)] == ["succeeded"] * 3
    (char,) = char_job["results"][0]["characters"]
    assert char["char"] == s.classes[s.labels[idx[4]]] and len(char["alternatives"]) == 1
    text = text_job["results"][0]
    assert len(text["characters"]) >= 3 and all(len(c["alternatives"]) == 4 for c in text["characters"])
    assert bad_job["results"][0]["error"]["code"] == "undecodable_image"


def test_publisher_sends_the_jobs_submitted_together_as_one_message(redis_server, redis_client):
    # A queue no worker reads, so the message stays there to be looked at.
    config = WorkerConfig(redis_url=redis_server.url, queue="hwr-grouping-test")
    publisher = JobPublisher(redis_client, make_celery(config), config, linger=60.0)
    new = [jobs.NewJob(jobs.new_job_id(), [b"image %d" % i], "char", 3) for i in range(6)]
    with publisher.arrival() as last_request:  # still parsing its upload: the others wait for it
        threads = [threading.Thread(target=publisher.submit, args=(job,)) for job in new[:5]]
        for thread in threads:
            thread.start()
        publisher.submit(new[5], last_request)
        for thread in threads:
            thread.join(10)
    messages = redis_client.lrange(config.queue, 0, -1)
    assert len(messages) == 1
    args, kwargs, _ = json.loads(base64.b64decode(json.loads(messages[0])["body"]))
    assert sorted(args[0]) == sorted(j.job_id for j in new) and args[1] == [1] * 6
    assert all(jobs.get_job(redis_client, j.job_id)["status"] == "queued" for j in new)


def test_job_waiter_wakes_on_the_finish_message_and_close_stops_it_quietly(redis_client, caplog):
    waiter = JobWaiter(redis_client)
    job_id = jobs.new_job_id()
    event = waiter.register(job_id)  # returns once the subscription is active
    redis_client.publish(jobs.done_channel(job_id), "succeeded")
    assert event.wait(5)
    waiter.unregister(job_id, event)
    with caplog.at_level("WARNING", logger="worker.queue"):
        waiter.close()
    assert not waiter._thread.is_alive()
    assert "subscription lost" not in caplog.text


def test_only_small_jobs_share_a_message():
    from worker.queue import _Submission, _weight

    def weight(*sizes):
        return _weight(_Submission(jobs.NewJob("id", [bytes(n) for n in sizes])))

    assert weight(43_000) == 1 and weight(1000, 1000) == 2 and weight(100_000) == 2
    assert weight(5 << 20) > JobPublisher.MAX_GROUP_WEIGHT  # a 5 MB scan travels alone
    assert weight(*[1000] * 100) > JobPublisher.MAX_GROUP_WEIGHT  # so does a 100-image job


def test_a_bug_in_one_job_fails_only_that_job(monkeypatch):
    from worker import recognize, tasks

    class AnswerEverything:
        def planning(self):
            return contextlib.nullcontext()

        def submit(self, tiles, planned=None):
            probs = np.full((len(tiles), 47), 0.1 / 46)
            probs[:, 10] = 0.9  # an A
            return types.SimpleNamespace(probabilities=lambda: probs)

    plan_image = recognize.plan_image

    def buggy(blob, *args):
        if blob == b"trigger":
            raise RuntimeError("a bug")
        return plan_image(blob, *args)

    monkeypatch.setattr(recognize, "plan_image", buggy)
    image = png(255 - compose_word([np.eye(28, dtype=np.uint8) * 255], np.random.default_rng(0), height=60))
    claimed = [("ok", {"mode": "char", "top_k": "2"}, [image]), ("bug", {"mode": "char", "top_k": "1"}, [b"trigger"])]
    outcomes = tasks.recognize_claimed(
        types.SimpleNamespace(batcher=AnswerEverything(), planning_slots=threading.Semaphore(2)), claimed)
    status, results, error = outcomes["ok"]
    assert status == "succeeded" and len(results[0]["characters"][0]["alternatives"]) == 2
    assert outcomes["bug"] == ("failed", None, {"code": "internal_error", "message": "RuntimeError"})


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []
    fail_first = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_response(503)
        else:
            cls.received.append((dict(self.headers), body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_is_signed_and_retried(celery_worker, redis_client, producer, emnist_test_sample):
    _Receiver.received, _Receiver.fail_first = [], 1
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        rng = np.random.default_rng(4)
        (job,) = run_jobs(redis_client, producer, [[render_scan(emnist_test_sample.images[0], rng)]],
                          callback_url=url)
        from tests.stack import wait_until

        wait_until(lambda: _Receiver.received, 30, "webhook delivery")
        headers, body = _Receiver.received[0]
        signature, timestamp = headers[webhooks.SIGNATURE_HEADER], headers[webhooks.TIMESTAMP_HEADER]
        assert webhooks.verify(body, "test-secret", signature, timestamp)
        assert not webhooks.verify(body + b" ", "test-secret", signature, timestamp)
        assert not webhooks.verify(body, "test-secret", signature, str(int(timestamp) + 60)), "replay"
        delivered = json.loads(body)
        assert delivered["id"] == job["id"] and delivered["status"] == "succeeded"
        assert delivered["results"] == job["results"]
        assert len(_Receiver.received) == 1
    finally:
        server.shutdown()


@pytest.fixture
def unserved_redis(redis_server):
    """A database no worker listens on: the session's worker sweeps the legacy set too,
    and would re-stamp this test's "submitted long ago" jobs under it."""
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/6")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_the_sweeper_of_a_queue_takes_only_that_queues_jobs(unserved_redis):
    redis_client = unserved_redis
    ids = {}
    for queue in ("hwr-a", "hwr-b", ""):  # "": stored by an older release, anyone's
        ids[queue] = jobs.new_job_id()
        jobs.create_jobs(redis_client, [jobs.NewJob(ids[queue], [b"img"], "char", 1)], 600, 600, queue)
        redis_client.zadd(jobs.pending_key(queue), {ids[queue]: 1})  # submitted long ago
    # A backlog of another queue that nobody sweeps, older than everything else and larger
    # than one round's limit, must not hide this queue's jobs (each queue has its own set).
    backlog = {jobs.new_job_id(): 0 for _ in range(30)}
    for job_id in backlog:
        jobs.create_jobs(redis_client, [jobs.NewJob(job_id, [b"img"], "char", 1)], 600, 600, "hwr-unswept")
    redis_client.zadd(jobs.pending_key("hwr-unswept"), backlog)
    assert sorted(j for j, _ in jobs.stale_jobs(redis_client, 10, "hwr-a", limit=10)) == sorted(
        [ids["hwr-a"], ids[""]])
    # Re-stamped when returned: not stale again until another `older_than` has passed.
    assert [j for j, _ in jobs.stale_jobs(redis_client, 10, "hwr-b", limit=10)] == [ids["hwr-b"]]
    assert jobs.stale_jobs(redis_client, 10, "hwr-a") == []


def test_a_finished_job_leaves_its_queues_pending_set(redis_client):
    job_id = jobs.new_job_id()
    jobs.create_jobs(redis_client, [jobs.NewJob(job_id, [b"img"], "char", 1)], 600, 600, "hwr-a")
    assert redis_client.zscore(jobs.pending_key("hwr-a"), job_id) is not None
    assert 0 < redis_client.ttl(jobs.pending_key("hwr-a")) <= 600, "a queue's set expires with its jobs"
    assert jobs.claim_jobs(redis_client, [(job_id, 1)])[0][0] == "running"
    assert jobs.finish_jobs(redis_client, [(job_id, "succeeded", [], None)], 600) == [True]
    assert redis_client.zscore(jobs.pending_key("hwr-a"), job_id) is None
    assert redis_client.exists(jobs.blob_key(job_id, 0)) == 0


def test_regions_of_one_page_decode_it_once(monkeypatch):
    """A form's fields read as regions of one upload: the page is decoded once, not once per
    field, and only uploads read more than once stay decoded."""
    from serve import preprocess
    from worker import recognize

    decoded = []
    decode_image = preprocess.decode_image
    monkeypatch.setattr(preprocess, "decode_image", lambda data, limit: decoded.append(data) or decode_image(data, limit))
    glyph = np.zeros((60, 60), np.uint8)
    glyph[10:50, 28:33] = 255  # a bar: "1"
    page = np.full((100, 200), 235, np.uint8)
    page[20:80, 10:70] = 255 - glyph
    page[20:80, 120:180] = 255 - glyph
    blobs = [png(page), b"", png(page)]
    pages = recognize.Pages(blobs, 10**7, sources=[0, 0, 2])
    left, right = pages.plan(0, "char", [0, 0, 100, 100]), pages.plan(0, "char", [100, 0, 100, 100])
    assert len(decoded) == 1 and 0 in pages.decoded
    assert left.boxes[0][0] < 100 <= right.boxes[0][0]  # each in the page's pixels
    assert right.boxes[0][0] - left.boxes[0][0] == 110
    pages.plan(2, "char", None)
    assert len(decoded) == 2 and 2 not in pages.decoded
    assert pages.plan(0, "char", [0, 0, 4, 4]).error["code"] == "image_too_small"
