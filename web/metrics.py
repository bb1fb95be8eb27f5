"""Prometheus metrics of the web app: requests by endpoint and status, latency, jobs.

Each app has its own registry (several apps can live in one test process). Under
gunicorn with several worker processes, set PROMETHEUS_MULTIPROC_DIR: prometheus-client
then keeps values in files and /metrics adds up every process.
"""
from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WebMetrics:
    def __init__(self, multiprocess_dir: str = ""):
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        self.requests = Counter("hwr_web_requests_total", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("hwr_web_request_duration_seconds", "Time to answer a request",
                                 ["endpoint", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.jobs = Counter("hwr_web_jobs_submitted_total", "Jobs created, by mode", ["mode"],
                            registry=self.registry)
        self.images = Counter("hwr_web_images_submitted_total", "Images in created jobs", registry=self.registry)

    def install(self, app: Flask) -> None:
        @app.before_request
        def start_timer():
            g.started = time.perf_counter()

        @app.after_request
        def observe(response: Response) -> Response:
            # The route pattern, not the path: job ids would make one series per job.
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            self.requests.labels(endpoint, request.method, str(response.status_code)).inc()
            if "started" in g:
                self.latency.labels(endpoint, request.method).observe(time.perf_counter() - g.started)
            return response

        @app.get("/metrics")
        def metrics():
            registry = self.registry
            if self.multiprocess_dir:
                registry = CollectorRegistry()
                MultiProcessCollector(registry, path=self.multiprocess_dir)
            return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
