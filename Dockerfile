# groupsync container: a static binary on a small Alpine base with CA certificates, time zone
# data (for CRON_TZ= schedules) and a non-root user. Alpine rather than distroless because the
# compose healthcheck needs an HTTP client (busybox wget) inside the image.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse --short HEAD) -t groupsync .
#   docker run -v $PWD/groupsync.yaml:/etc/groupsync/groupsync.yaml:ro -e GROUPSYNC_DATABASE_URL_FILE=/run/secrets/database_url ... groupsync

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/groupsync ./cmd/groupsync

FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata \
 && adduser -D -H -u 10001 -s /sbin/nologin groupsync
COPY --from=build /out/groupsync /usr/local/bin/groupsync
# The configuration file is mounted here; every key can be overridden with GROUPSYNC_* and
# every secret given as a file with GROUPSYNC_..._FILE (e.g. Docker or Kubernetes secrets).
# GROUPSYNC_HTTP_LISTEN pins /healthz, /readyz and /metrics to the exposed port on every
# interface: a mounted file saying 127.0.0.1:8080 or another port would otherwise leave the
# published port and the probes answering nothing. Override the variable to move them.
ENV GROUPSYNC_CONFIG=/etc/groupsync/groupsync.yaml \
    GROUPSYNC_LOG_FORMAT=json \
    GROUPSYNC_HTTP_LISTEN=:8080
# Secret files mounted into the container must be readable by this user (README "Container").
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["groupsync"]
CMD ["sync"]
