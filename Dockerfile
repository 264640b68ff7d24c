# One image for every hexfleet role: api, ingest worker, agent (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /opt/hexfleet
COPY pyproject.toml README.md ./
COPY hexfleet hexfleet
COPY models models
COPY device_agent device_agent
COPY orchestrator orchestrator
RUN pip install --no-cache-dir .
ENV HEXFLEET_DATA_DIR=/var/lib/hexfleet
VOLUME /var/lib/hexfleet
ENTRYPOINT ["hexfleet"]
