# modelmux in a container: built with the same locked dependencies as CI, run as a non-root
# user on a distroless base (glibc and CA certificates, no shell).
#   docker build -t registry.example.com/modelmux:0.1.0 .
#   docker push registry.example.com/modelmux:0.1.0
# The image serves the offline config (mock vendors inside) unless given another:
#   docker run --rm -p 8080:8080 registry.example.com/modelmux:0.1.0
#   docker run --rm -p 8080:8080 -v $PWD/my.yaml:/etc/modelmux/modelmux.yaml:ro --env-file vendors.env ...

FROM rust:1-bookworm AS build
# Pingora builds zlib-ng, which needs cmake.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY console console
COPY benches benches
RUN cargo build --profile dist --locked && strip target/dist/modelmux
COPY conf conf
# In a container the API and metrics listen on every interface (the admin listener stays on
# the container's own loopback).
RUN sed -i -e 's/127.0.0.1:8080/0.0.0.0:8080/' -e 's/127.0.0.1:9091/0.0.0.0:9091/' conf/modelmux.yaml

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/dist/modelmux /usr/local/bin/modelmux
# The offline config and its apps and workflows; the Kubernetes manifests mount the real one
# over /etc/modelmux (read-only: the console then says it cannot save).
COPY --from=build /src/conf/ /etc/modelmux/
# The manifests' user. The upgrade socket defaults to a private /tmp/modelmux-65532/.
USER 65532:65532
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/modelmux"]
CMD ["serve", "-c", "/etc/modelmux/modelmux.yaml"]
