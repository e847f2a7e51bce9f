# The build container.
#   docker build -t alloy-sysext-builder .
#   mkdir -p output && docker run --rm -v "${PWD}/output:/output" --user "$(id -u):$(id -g)" alloy-sysext-builder
# Arguments after the image name go to invoke (default: all), e.g. `all --version=1.10.2 --arch=arm64`.
#
# The base is an ARG so it can be pinned by digest for reproducible images; look the digest up
# with `docker buildx imagetools inspect ubuntu:22.04` and build with
#   docker build --build-arg BASE_IMAGE=ubuntu:22.04@sha256:<digest> -t alloy-sysext-builder .
ARG BASE_IMAGE=ubuntu:22.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# python3-venv brings pip into the virtualenv below; squashfs-tools is mksquashfs; openssl signs
# a DDI's root hash (--format=ddi).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv squashfs-tools erofs-utils openssl \
    && rm -rf /var/lib/apt/lists/*

COPY requirements-runtime.txt /build/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /build/requirements-runtime.txt
ENV PATH=/opt/venv/bin:${PATH}

COPY tasks.py docker-entrypoint.sh build-alloy-sysext.sh /build/
COPY build/ /build/build/

# Any --user can write the download cache; /output is the builder's unless a volume replaces it.
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /nonexistent builder \
    && mkdir -p /output /cache \
    && chown builder:builder /output \
    && chmod 1777 /cache
ENV INVOKE_OUTPUT_DIR=/output \
    XDG_CACHE_HOME=/cache

WORKDIR /build
USER 1000:1000
VOLUME ["/output"]
ENTRYPOINT ["/build/docker-entrypoint.sh"]
CMD ["all"]
