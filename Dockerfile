FROM python:3.11-slim
WORKDIR /app
COPY . /app
# editable: the code finds schemas/ and data/ beside it in /app
RUN pip install --no-cache-dir -e .
