FROM python:3.11-slim

RUN useradd --create-home --uid 10001 edge
WORKDIR /app
COPY pyproject.toml README.md ./
COPY edge ./edge
COPY images ./images
RUN pip install --no-cache-dir . && rm -rf /root/.cache

# The YAML is mounted, not baked in: docker run -v $PWD/config:/etc/edge:ro ...
COPY config /etc/edge
VOLUME ["/etc/edge"]
USER edge
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["edge", "serve", "--config", "/etc/edge", "--host", "0.0.0.0"]
