# syntax=docker/dockerfile:1
# The one pvshift image: webhook, controller and copy runner
# (`--mode=webhook|controller|runner`). Not built in this repository's CI (no
# Docker engine there); build with `docker build -t pvshift:dev .`.

# Node.js 24 (Active LTS; 20 reached its end of life in April 2026). The base is
# a build argument so an image can be built from a base made elsewhere (a local
# Debian rootfs with Node.js, a mirror): --build-arg NODE_IMAGE=...
ARG NODE_IMAGE=node:24-slim

# ---- build: compile TypeScript with the dev dependencies --------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
# Manifests first: the npm ci layer is reused until the lockfile changes.
COPY package.json package-lock.json ./
RUN npm ci
# The rest of the context: .dockerignore keeps it to the sources
# tsconfig.build.json compiles (src, webhook, populator, runner, certs, cli).
COPY . .
RUN npm run build

# ---- runtime ------------------------------------------------------------------
FROM ${NODE_IMAGE}
# tini as PID 1: forwards SIGTERM to node (a PID 1 without a handler ignores
# it) and reaps rsync's children. rsync does the copy; attr (getfattr/setfattr)
# and acl (setfacl) are what the runner probes and keeps xattrs and ACLs with;
# findutils (GNU find, its pre-scan) and coreutils (cp -a, its first copy) are
# in every Debian image already, named so that no slimmer base drops them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends rsync tini attr acl findutils coreutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /src/dist ./dist
# webhook/configuration.ts reads the webhook entries from the chart's file,
# found at ../../charts/pvshift/files/webhooks.yaml from dist/webhook/.
COPY charts/pvshift/files/webhooks.yaml ./charts/pvshift/files/webhooks.yaml
# A non-root user for the webhook and the controller (the chart also sets
# runAsNonRoot and runAsUser 65532). Copy pods set runAsUser 0 in their own
# pod securityContext: keeping every file's owner needs root.
RUN groupadd --system --gid 65532 pvshift \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pvshift
# Numeric, so the kubelet's runAsNonRoot check can verify it without /etc/passwd.
USER 65532:65532
ENTRYPOINT ["tini", "--", "node", "/app/dist/src/main.js"]
