# The image configs/rayservice.yaml runs (KubeRay): Ray's GPU image plus copyserve with the CUDA vLLM.
FROM rayproject/ray:2.60.0-py311-gpu
COPY --chown=ray:users . /home/ray/copyserve
RUN pip install --no-cache-dir "/home/ray/copyserve[gpu]"
