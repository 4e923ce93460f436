"""ragflow_user against the fake RAGFlow, which starts as a new RAGFlow does (admin@ragflow.io / admin)."""

import base64

import pytest

from testkit.support import ModuleRunner

pytestmark = pytest.mark.integration

ADMIN = "admin@ragflow.io"
VAULTED = "vaulted-Pa55word"


@pytest.fixture
def run_user_module(tmp_path) -> ModuleRunner:
    return ModuleRunner("ragflow_user", tmp_path)


def user_args(fake, **overrides):
    args = {"base_url": fake.url, "email": ADMIN, "password": VAULTED, "public_key": fake.public_key_pem}
    args.update(overrides)
    return args


def logins(fake):
    return [path for method, path in fake.requests if method == "POST" and path.endswith("login")]


def test_first_boot_changes_the_factory_password_once(fake_ragflow, run_user_module):
    fake_ragflow.add_factory_admin()

    predicted = run_user_module(user_args(fake_ragflow), check_mode=True)
    assert (predicted["changed"], fake_ragflow.password_of(ADMIN)) == (True, "admin")
    assert predicted["msg"] == "would change the password of admin@ragflow.io from initial_password"

    changed = run_user_module(user_args(fake_ragflow))
    assert changed["changed"] is True
    assert changed["api_generation"] == fake_ragflow.generation
    assert fake_ragflow.password_of(ADMIN) == VAULTED

    checked = run_user_module(user_args(fake_ragflow), check_mode=True)
    again = run_user_module(user_args(fake_ragflow))
    assert (checked["changed"], again["changed"]) == (False, False)
    assert again["msg"] == "admin@ragflow.io logs in with the given password"


def test_a_second_run_logs_in_once(fake_ragflow, run_user_module):
    fake_ragflow.add_user(ADMIN, VAULTED)

    result = run_user_module(user_args(fake_ragflow))

    assert result["changed"] is False
    assert len(logins(fake_ragflow)) == 1
    assert fake_ragflow.writes() == []


def test_a_password_changed_by_someone_else_fails_without_change(fake_ragflow, run_user_module):
    fake_ragflow.add_user(ADMIN, "changed-in-the-web-ui")

    result = run_user_module(user_args(fake_ragflow))

    assert (result["failed"], result["changed"]) == (True, False)
    assert result["msg"].startswith("RAGFlow refused both password and initial_password for admin@ragflow.io")
    assert fake_ragflow.password_of(ADMIN) == "changed-in-the-web-ui"


def test_an_unknown_user_is_named(fake_ragflow, run_user_module):
    fake_ragflow.add_factory_admin()

    result = run_user_module(user_args(fake_ragflow, email="nobody@example.com"))

    assert result["failed"] is True
    assert "has no user nobody@example.com (Email: nobody@example.com is not registered!)" in result["msg"]


def test_the_passwords_never_show_but_the_public_factory_one_does(fake_ragflow, run_user_module):
    fake_ragflow.add_user(ADMIN, "previous-Pa55")

    rotated = run_user_module(user_args(fake_ragflow, initial_password="previous-Pa55"))
    factory = run_user_module(user_args(fake_ragflow, password="next-Pa55"))

    assert rotated["changed"] is True
    assert VAULTED not in str(rotated) and "previous-Pa55" not in str(rotated)
    assert rotated["invocation"]["module_args"]["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert rotated["invocation"]["module_args"]["initial_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    # "admin" is RAGFlow's documented factory password: masking it would mask admin@ragflow.io too.
    assert factory["msg"].startswith("RAGFlow refused both password and initial_password for admin@ragflow.io")
    assert "next-Pa55" not in str(factory)


def test_the_new_password_is_what_ragflow_stores(fake_ragflow, run_user_module):
    """RAGFlow stores base64(password) hashed; the double keeps base64(password), what the login decrypts to."""
    fake_ragflow.add_factory_admin()

    run_user_module(user_args(fake_ragflow))

    assert fake_ragflow.users[ADMIN]["password"] == base64.b64encode(VAULTED.encode()).decode()


def test_an_empty_password_is_refused_before_anything_is_sent(fake_ragflow, run_user_module):
    result = run_user_module(user_args(fake_ragflow, password=""))

    assert (result["failed"], result["msg"]) == (True, "password must not be empty")
    assert fake_ragflow.requests == []
