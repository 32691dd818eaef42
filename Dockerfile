# Builds every Conveyor binary once; each service in docker-compose.yml runs one of them.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/users-service \
     /src/target/release/orders-service \
     /src/target/release/inventory-service \
     /src/target/release/payments-service \
     /src/target/release/shipping-service \
     /src/target/release/api-gateway \
     /src/target/release/conveyor \
     /usr/local/bin/
ENV LISTEN_ADDR=0.0.0.0 LOG_FORMAT=json
