"""An OTLP trace receiver for tests, built on the OpenTelemetry project's own protobuf
definitions (`opentelemetry-proto`): OTLP/HTTP (protobuf, on /v1/traces) and OTLP/gRPC
(TraceService/Export). It keeps every span it is sent, flattened to a dict."""

import gzip
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Receiver:
    """Spans received over either protocol; `delay` makes every export that slow."""

    def __init__(self):
        self.spans = []
        self.requests = []
        self.delay = 0.0
        self.lock = threading.Lock()

    def take(self, request, protocol, headers):
        with self.lock:
            self.requests.append({"protocol": protocol, "headers": headers})
            for rs in request.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append({
                            "protocol": protocol,
                            "service": resource.get("service.name"),
                            "scope": ss.scope.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": trace_pb2.Span.SpanKind.Name(s.kind),
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "trace_state": s.trace_state,
                            "status": trace_pb2.Status.StatusCode.Name(s.status.code),
                            "attributes": {a.key: _value(a.value) for a in s.attributes},
                        })

    def wait_for(self, predicate, timeout=10.0):
        """The spans once `predicate(spans)` holds; fails after `timeout`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"spans never arrived as expected: {spans}")


class HttpReceiver(Receiver):
    def __init__(self, port):
        super().__init__()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                time.sleep(receiver.delay)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(request, "http", dict(self.headers))
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class GrpcReceiver(Receiver):
    def __init__(self, port):
        super().__init__()
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                time.sleep(receiver.delay)
                receiver.take(request, "grpc", dict(context.invocation_metadata()))
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    def stop(self):
        self.server.stop(0)
