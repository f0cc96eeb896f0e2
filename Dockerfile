# The release image: the static binary built by cargo outside the image (as
# kube-rs/controller-rs does), copied onto scratch, run as a non-root user.
# The same file serves CI (buildah, here) and a release pipeline (docker
# buildx); see docs/install.md.
#
#   RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release --target x86_64-unknown-linux-gnu
#   buildah bud --build-arg BINARY=target/x86_64-unknown-linux-gnu/release/waf-admission \
#     --build-arg VERSION=0.3.0 --build-arg REVISION=$(git rev-parse HEAD) -t waf-admission .
FROM scratch

ARG BINARY=target/x86_64-unknown-linux-gnu/release/waf-admission
ARG VERSION=0.3.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/waf-admission/waf-admission

LABEL org.opencontainers.image.title="waf-admission" \
      org.opencontainers.image.description="Admission webhook holding AI model-serving workloads on AKS to the Azure Well-Architected Framework" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY ${BINARY} /waf-admission

# A numeric user, so runAsNonRoot can verify it without an /etc/passwd.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/waf-admission"]
CMD ["serve"]
