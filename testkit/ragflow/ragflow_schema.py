"""RAGFlow v0.27.0's user, tenant, user_tenant and api_token tables, as MySQL DDL.

Written from the field lists of the peewee models in RAGFlow's api/db/db_models.py (User, Tenant,
UserTenant, APIToken, each with BaseModel's create_time/create_date/update_time/update_date),
using peewee's MySQL column types: CharField -> VARCHAR(max_length, default 255), TextField -> TEXT,
BigIntegerField -> BIGINT, IntegerField -> INT, BooleanField -> BOOL, DateTimeField -> DATETIME.
"""

TIMESTAMPS = "create_time BIGINT NULL, create_date DATETIME NULL, update_time BIGINT NULL, update_date DATETIME NULL"

RAGFLOW_TABLES = (
    "CREATE TABLE `user` ("
    " id VARCHAR(32) NOT NULL PRIMARY KEY, access_token VARCHAR(255) NULL, nickname VARCHAR(100) NOT NULL,"
    " password VARCHAR(255) NULL, email VARCHAR(255) NOT NULL UNIQUE, avatar TEXT NULL, language VARCHAR(32) NULL,"
    " color_schema VARCHAR(32) NULL, timezone VARCHAR(64) NULL, last_login_time DATETIME NULL,"
    " is_authenticated VARCHAR(1) NOT NULL, is_active VARCHAR(1) NOT NULL, is_anonymous VARCHAR(1) NOT NULL,"
    " login_channel VARCHAR(255) NULL, status VARCHAR(1) NULL, is_superuser BOOL NULL, %s)" % TIMESTAMPS,
    "CREATE TABLE tenant ("
    " id VARCHAR(32) NOT NULL PRIMARY KEY, name VARCHAR(100) NULL, public_key VARCHAR(255) NULL,"
    " llm_id VARCHAR(128) NOT NULL, tenant_llm_id VARCHAR(32) NULL, embd_id VARCHAR(128) NOT NULL,"
    " tenant_embd_id VARCHAR(32) NULL, asr_id VARCHAR(128) NOT NULL, tenant_asr_id VARCHAR(32) NULL,"
    " img2txt_id VARCHAR(128) NOT NULL, tenant_img2txt_id VARCHAR(32) NULL, rerank_id VARCHAR(128) NOT NULL,"
    " tenant_rerank_id VARCHAR(32) NULL, tts_id VARCHAR(256) NULL, tenant_tts_id VARCHAR(32) NULL,"
    " ocr_id VARCHAR(256) NULL, tenant_ocr_id VARCHAR(32) NULL, parser_ids VARCHAR(256) NOT NULL,"
    " credit INT NOT NULL DEFAULT 512, status VARCHAR(1) NULL, %s)" % TIMESTAMPS,
    "CREATE TABLE user_tenant ("
    " id VARCHAR(32) NOT NULL PRIMARY KEY, user_id VARCHAR(32) NOT NULL, tenant_id VARCHAR(32) NOT NULL,"
    " role VARCHAR(32) NOT NULL, invited_by VARCHAR(32) NOT NULL, status VARCHAR(1) NULL, %s)" % TIMESTAMPS,
    "CREATE TABLE api_token ("
    " tenant_id VARCHAR(32) NOT NULL, token VARCHAR(255) NOT NULL, dialog_id VARCHAR(32) NULL,"
    " source VARCHAR(16) NULL, beta VARCHAR(255) NULL, %s, PRIMARY KEY (tenant_id, token))" % TIMESTAMPS,
)


def insert_never_logged_in_user(cursor, user_id, email, member_of=()):
    """A user as RAGFlow's admin server creates one: no access_token (never logged in), owner of the
    tenant with its own id; also a normal member of each tenant id in `member_of`, listed first (the
    order RAGFlow's token deletion reads, tenants[0])."""
    cursor.execute(
        "INSERT INTO `user` (id, nickname, email, is_authenticated, is_active, is_anonymous)"
        " VALUES (%s, 'admin', %s, '1', '1', '0')",
        (user_id, email),
    )
    for tenant_id in (user_id, *member_of):
        cursor.execute(
            "INSERT INTO tenant (id, llm_id, embd_id, asr_id, img2txt_id, rerank_id, parser_ids)"
            " VALUES (%s, '', '', '', '', '', '')",
            (tenant_id,),
        )
    memberships = [(tenant_id, "normal") for tenant_id in member_of] + [(user_id, "owner")]
    for number, (tenant_id, role) in enumerate(memberships):
        cursor.execute(
            "INSERT INTO user_tenant (id, user_id, tenant_id, role, invited_by) VALUES (%s, %s, %s, %s, %s)",
            ("%032x" % (number + 1), user_id, tenant_id, role, user_id),
        )
