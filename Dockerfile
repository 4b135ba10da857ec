# opstatus in a container: a small image (slim Python, no build tools in the final
# stage) running as a non-root user, with a health check on /readyz.
# The default command serves on SQLite in the volume /data; compose.yaml runs it in
# testing mode on PostgreSQL with Mosquitto (docs/testing.md).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY opstatus ./opstatus
RUN python -m venv /opt/opstatus \
    && /opt/opstatus/bin/pip install --no-cache-dir ".[mqtt]"

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home opstatus
COPY --from=build /opt/opstatus /opt/opstatus
ENV PATH=/opt/opstatus/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPSTATUS_DATABASE_URL=sqlite:////data/opstatus.db
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8080
# The slim image has no curl; the interpreter it already has asks instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
ENTRYPOINT ["opstatus"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
