# Images of the EmbSum online scoring service (docs/operations.md).
#
#   CPU, Debian 12:  docker build --target cpu -t embsum:cpu .
#   GPU, CUDA 12:    docker build --target gpu -t embsum:gpu .
#
# cpu (the default target) installs exactly the packages of the README's
# set-up by running tools/setup.sh, then builds and tests with tools/test.sh,
# the README's test command: the same recipe CI runs, so CI's build is the
# proof of this stage. Build without the test run (faster, not the CI
# recipe) with --build-arg EMBSUM_RUN_TESTS=0.
#
# gpu builds FAISS with GPU support from a pinned release on the CUDA devel
# image (Ubuntu 24.04: the same gRPC 1.51, protobuf 3.21 and Abseil as
# Debian 12), then the service with -DEMBSUM_CUDA=ON; the runtime stage on
# the CUDA runtime image holds the executables and the shared libraries they
# load, nothing else.
#
# Both run embsum-server as the unprivileged user embsum (uid 10001) with
# --data_dir=/data; the Kubernetes manifests in deploy/k8s mount /data.
# tests/deploy checks this file against tools/setup.sh and the repository.

ARG DEBIAN_IMAGE=debian:12
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04

############################################################ GPU image

FROM ${CUDA_DEVEL_IMAGE} AS gpu-build
ARG FAISS_VERSION=1.8.0
# Ampere (80, 86), Ada (89), Hopper (90).
ARG CUDA_ARCHITECTURES="80;86;89;90"
ENV DEBIAN_FRONTEND=noninteractive
# tools/setup.sh's list less libfaiss-dev (CPU-only; built below with GPU
# support), civetweb (the command-line tool; libcivetweb-dev is the library),
# and what only the tests and sanitizer builds use (prometheus, python3*,
# clang, libclang-rt-14-dev, libomp-dev, grpc-proto, haproxy, nats-server,
# python3-torch), since this
# stage runs no tests; plus ca-certificates for the FAISS download.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config git openssl ca-certificates \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev librocksdb-dev libopenblas-dev \
      libcivetweb-dev libgtest-dev libgmock-dev libbenchmark-dev \
      nlohmann-json3-dev libxxhash-dev libnats-dev \
      zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
# FAISS as a shared library: its CUDA dependencies stay private to
# libfaiss.so instead of leaking CUDA:: targets into the service's build.
RUN git clone --depth 1 --branch "v${FAISS_VERSION}" \
      https://github.com/facebookresearch/faiss.git /tmp/faiss \
 && cmake -S /tmp/faiss -B /tmp/faiss/build -G Ninja \
      -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_SHARED_LIBS=ON \
      -DFAISS_ENABLE_GPU=ON \
      -DFAISS_ENABLE_RAFT=OFF \
      -DFAISS_ENABLE_PYTHON=OFF \
      -DBUILD_TESTING=OFF \
      -DBLA_VENDOR=OpenBLAS \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
 && cmake --build /tmp/faiss/build \
 && cmake --install /tmp/faiss/build --prefix /usr/local \
 && ldconfig \
 && rm -rf /tmp/faiss
COPY . /src
RUN cmake -S /src -B /build -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DEMBSUM_CUDA=ON \
      -DEMBSUM_BUILD_TESTS=OFF \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
 && cmake --build /build \
 && /src/deploy/docker/collect-binaries.sh --build_dir=/build --out=/opt/embsum \
      --libs --strip \
      --exclude_lib='^lib(cudart|cublas|cublasLt|curand|cusparse|cufft|cusolver|nvJitLink|nvrtc)\.so'

FROM ${CUDA_RUNTIME_IMAGE} AS gpu
COPY --from=gpu-build /opt/embsum /opt/embsum
RUN echo /opt/embsum/lib > /etc/ld.so.conf.d/embsum.conf \
 && ldconfig \
 && groupadd --system --gid 10001 embsum \
 && useradd --system --uid 10001 --gid embsum --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin embsum \
 && install -d -o embsum -g embsum /data
ENV PATH=/opt/embsum/bin:${PATH}
USER 10001:10001
WORKDIR /data
# --listen (gRPC Ranker and grpc.health.v1) and --metrics_listen (/metrics).
EXPOSE 50051 9464
ENTRYPOINT ["embsum-server"]
CMD ["--data_dir=/data", "--backend=cuda"]

############################################################ CPU image

FROM ${DEBIAN_IMAGE} AS cpu-base
# The README's set-up, unchanged: exactly its package list.
COPY tools/setup.sh /opt/embsum-setup/setup.sh
RUN /opt/embsum-setup/setup.sh \
 && rm -rf /var/lib/apt/lists/*

FROM cpu-base AS cpu-build
ARG EMBSUM_RUN_TESTS=1
COPY . /src
# Build (and test) as an unprivileged user, as a developer would.
RUN useradd --create-home --uid 10002 builder && chown -R builder /src
USER builder
WORKDIR /src
RUN if [ "${EMBSUM_RUN_TESTS}" = 1 ]; then \
      BUILD_DIR=/src/build ./tools/test.sh; \
    else \
      cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      && cmake --build build; \
    fi
USER root
RUN ./deploy/docker/collect-binaries.sh --build_dir=/src/build --out=/opt/embsum --strip

FROM cpu-base AS cpu
COPY --from=cpu-build /opt/embsum /opt/embsum
RUN groupadd --system --gid 10001 embsum \
 && useradd --system --uid 10001 --gid embsum --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin embsum \
 && install -d -o embsum -g embsum /data
ENV PATH=/opt/embsum/bin:${PATH}
USER 10001:10001
WORKDIR /data
# --listen (gRPC Ranker and grpc.health.v1) and --metrics_listen (/metrics).
EXPOSE 50051 9464
ENTRYPOINT ["embsum-server"]
CMD ["--data_dir=/data", "--backend=cpu"]
