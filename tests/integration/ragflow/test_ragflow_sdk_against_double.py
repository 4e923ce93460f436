"""Cross-check of the RAGFlow double with RAGFlow's official Python client (ragflow-sdk 0.22.1, the last
release for Python 3.11): its documented flow, as the SDK sends and parses it, in both API generations.

The flow needed one route the double lacked, GET .../documents/<id>/chunks (Document.list_chunks); it
now serves it as upstream does (testkit/ragflow/UPSTREAM.md). The SDK's other calls (agents, sessions
listing, chunk edits, dataset and document updates) are outside what the collection uses and the double
does not serve them."""

import pytest
from ragflow_sdk import RAGFlow

from testkit.ragflow.fake_ragflow_datasets import FakeRagflowDatasets

pytestmark = pytest.mark.integration

DOCUMENT = b"Quillwort grows at the bottom of clear lakes. The ragstack lab keeps no quillwort."


@pytest.fixture(params=["v0.27", "v0.24"])
def sdk(request):
    fake = FakeRagflowDatasets(request.param).start()
    fake.parse_polls = 1
    tenant = fake.add_user("admin@example.com", "s3cret-Pa55")
    client = RAGFlow(api_key=fake.add_token(tenant), base_url=fake.url)
    yield fake, tenant, client
    fake.stop()


def test_the_sdks_documented_flow(sdk):
    fake, tenant, rag = sdk

    dataset = rag.create_dataset(name="sdk-cross-check")
    dataset.upload_documents([{"display_name": "quillwort.txt", "blob": DOCUMENT}])
    [document] = dataset.list_documents()
    assert document.name == "quillwort.txt"

    [(document_id, run, chunk_count, _tokens)] = dataset.parse_documents([document.id])
    assert (document_id, run) == (document.id, "DONE")
    assert chunk_count == 2

    chunks = document.list_chunks()
    assert [chunk.content for chunk in chunks] == [
        "Quillwort grows at the bottom of clear lakes.",
        "The ragstack lab keeps no quillwort.",
    ]

    found = rag.retrieve(dataset_ids=[dataset.id], question="What lies at the bottom of clear lakes?")
    assert found[0].content == "Quillwort grows at the bottom of clear lakes."

    chat = rag.create_chat("sdk-cross-check", dataset_ids=[dataset.id])
    session = chat.create_session()
    [answer] = list(session.ask("What lies at the bottom of clear lakes?"))
    assert "bottom of clear lakes" in answer.content

    rag.delete_chats(ids=[chat.id])
    rag.delete_datasets(ids=[dataset.id])
    assert fake.live_chats(tenant) == []
    assert fake.datasets_of(tenant) == []


def test_the_sdk_reads_a_streamed_answer(sdk):
    _fake, _tenant, rag = sdk
    dataset = rag.create_dataset(name="sdk-stream")
    dataset.upload_documents([{"display_name": "quillwort.txt", "blob": DOCUMENT}])
    [document] = dataset.list_documents()
    dataset.parse_documents([document.id])
    session = rag.create_chat("sdk-stream", dataset_ids=[dataset.id]).create_session()

    messages = list(session.ask("What lies at the bottom of clear lakes?", stream=True))

    assert messages
    assert "bottom of clear lakes" in messages[-1].content
