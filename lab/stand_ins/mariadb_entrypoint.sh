#!/bin/sh
# Lab entrypoint of the `mysql` service: REAL MariaDB (Debian's mariadb-server) in place of the
# mysql:8.0.40 image. It does what that image's entrypoint does for RAGFlow: initialise the data
# directory once, give root the password MYSQL_ROOT_PASSWORD from anywhere on the compose network,
# and start the server with upstream's init file (compose mounts it at /data/application/init.sql).
# Upstream's MySQL 8 options (--default-authentication-plugin, --tls_version) are not MariaDB's.
set -eu
install -d -o mysql -g mysql /run/mysqld
chown -R mysql:mysql /var/lib/mysql
if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --auth-root-authentication-method=normal \
        --skip-test-db >/dev/null
fi
{
    echo "CREATE USER IF NOT EXISTS 'root'@'%';"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}';"
    echo "ALTER USER 'root'@'%' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    cat /data/application/init.sql
} > /run/mysqld/init.sql
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 --skip-log-bin \
    --innodb-buffer-pool-size=32M --max-connections=1000 --character-set-server=utf8mb4 \
    --collation-server=utf8mb4_unicode_ci --init-file=/run/mysqld/init.sql
