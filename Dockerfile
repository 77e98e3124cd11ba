# syntax=docker/dockerfile:1
# A static binary on a distroless, non-root base. One image, every role:
#   docker run IMAGE all | api | worker | scheduler | dashboard | migrate
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -tags nomsgpack -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/rentalportal ./cmd/rentalportal \
 && mkdir -p /out/data

# distroless/static: CA certificates (Stripe, S3 over TLS) and tzdata, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rentalportal /usr/local/bin/rentalportal
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
ENV APP_ENV=production \
    DATA_DIR=/data \
    HTTP_ADDR=:8080 \
    DASHBOARD_ADDR=:8081 \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080 8081 9090
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/rentalportal", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/rentalportal"]
CMD ["all"]
