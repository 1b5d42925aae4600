# The image configs/rayservice.yaml runs (KubeRay): Ray's GPU image plus copyserve with the CUDA vLLM.
FROM rayproject/ray:2.60.0-py311-gpu
COPY --chown=ray:users . /home/ray/copyserve
# Editable, like cluster.yaml, so the image runs the checkout it was built from (a wheel install works too).
RUN pip install --no-cache-dir -e "/home/ray/copyserve[gpu]"
