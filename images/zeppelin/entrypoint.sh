#!/usr/bin/env bash
# Entrypoint of the Aglais notebook image: writes Zeppelin's (or JupyterLab's) and
# Spark's configuration from the environment the spawner sets, then runs the notebook.
#   entrypoint.sh zeppelin     Apache Zeppelin on $ZEPPELIN_ADDR:$ZEPPELIN_PORT
#   entrypoint.sh jupyterlab   JupyterLab on the same address, with the same Spark
set -euo pipefail

flavour="${1:-zeppelin}"
: "${ZEPPELIN_HOME:=/opt/zeppelin}"
: "${SPARK_HOME:=/opt/spark}"
: "${SPARK_CONF_DIR:=/opt/spark/conf}"
: "${ZEPPELIN_ADDR:=127.0.0.1}"
: "${ZEPPELIN_PORT:=8080}"
: "${ZEPPELIN_SERVER_CONTEXT_PATH:=/}"
: "${ZEPPELIN_NOTEBOOK_DIR:=${HOME}/notebook}"
: "${PYSPARK_PYTHON:=python3}"
conf_dir="${ZEPPELIN_CONF_DIR:-${HOME}/.zeppelin/conf}"

write_zeppelin_env() {
    mkdir -p "${conf_dir}" "${ZEPPELIN_NOTEBOOK_DIR}"
    # Zeppelin runs anonymous inside the pod: only the auth proxy reaches it, and
    # ZEPPELIN_RUN_MODE=local keeps it from launching interpreters as pods.
    cat > "${conf_dir}/zeppelin-env.sh" <<CONF
export ZEPPELIN_RUN_MODE=local
export ZEPPELIN_ADDR=${ZEPPELIN_ADDR}
export ZEPPELIN_PORT=${ZEPPELIN_PORT}
export ZEPPELIN_SERVER_CONTEXT_PATH=${ZEPPELIN_SERVER_CONTEXT_PATH}
export ZEPPELIN_NOTEBOOK_DIR=${ZEPPELIN_NOTEBOOK_DIR}
export SPARK_HOME=${SPARK_HOME}
export SPARK_CONF_DIR=${SPARK_CONF_DIR}
export PYSPARK_PYTHON=${PYSPARK_PYTHON}
export PYSPARK_DRIVER_PYTHON=${PYSPARK_PYTHON}
export ZEPPELIN_SPARK_USEHIVECONTEXT=false
CONF
    # the interpreter reads spark-defaults.conf through spark-submit; the driver
    # listens on the pod address the executors are given
    if [ -n "${POD_IP:-}" ]; then
        echo "export SPARK_LOCAL_IP=${POD_IP}" >> "${conf_dir}/zeppelin-env.sh"
    fi
    cp -n "${ZEPPELIN_HOME}/conf/shiro.ini.template" "${conf_dir}/shiro.ini" 2>/dev/null || true
}

# One branch per flavour whose registration (aglais_hub/flavours.py) starts it with this
# script; any other flavour names its own command there and needs no branch here
# (tests/test_flavours.py checks the two agree).
case "${flavour}" in
    zeppelin)
        write_zeppelin_env
        export ZEPPELIN_CONF_DIR="${conf_dir}"
        exec "${ZEPPELIN_HOME}/bin/zeppelin.sh"
        ;;
    jupyterlab)
        mkdir -p "${HOME}/notebooks"
        # anonymous behind the auth proxy, which is the only door and makes the
        # cross-site checks (aglais_hub/podproxy/crosssite.py): JupyterLab's own _xsrf
        # check would refuse every write of a token client (the benchmark, Git sync), and
        # its origin check compares the browser's Origin with the proxy's upstream Host
        exec jupyter lab --no-browser --ip="${ZEPPELIN_ADDR}" --port="${ZEPPELIN_PORT}" \
            --ServerApp.base_url="${ZEPPELIN_SERVER_CONTEXT_PATH}" \
            --ServerApp.root_dir="${HOME}/notebooks" \
            --IdentityProvider.token="" --ServerApp.password="" \
            --ServerApp.disable_check_xsrf=True --ServerApp.allow_origin='*'
        ;;
    *)
        echo "entrypoint.sh: unknown flavour '${flavour}' (zeppelin or jupyterlab)" >&2
        exit 2
        ;;
esac
