"""The FAKE RAGFlow of fake_ragflow_providers.py, extended with the /api/v1 SDK endpoints ragflow_e2e uses.

UPSTREAM.md beside it names the upstream file and line of every route and behaviour it serves.

It follows RAGFlow's implementation of datasets, documents, retrieval and chats:

- generation "v0.24" (api/apps/sdk/dataset.py, doc.py, chat.py, session.py; auth by token_required in
  api/utils/api_utils.py): an API key that is not in the tokens table is HTTP 200, code 109
  "Authentication error: API key is invalid!"; a missing Authorization header is code 0, data false.
- generation "v0.27" (api/apps/restful_apis/dataset_api.py, document_api.py, chunk_api.py, chat_api.py,
  api/apps/services/dataset_api_service.py, document_api_service.py; auth by login_required in
  api/apps/__init__.py, which takes an API key or a login session): anything else is HTTP 401, code 401.
  It also serves POST /api/v1/chat/completions and keeps POST /api/v1/chats/<chat_id>/completions as
  the deprecated alias of api/apps/backward_compat.py.

Both serve POST/DELETE /api/v1/datasets, POST/GET /api/v1/datasets/<id>/documents (upload as multipart
field `file`; list with ?id=), POST /api/v1/datasets/<id>/chunks (start parsing), GET
/api/v1/datasets/<id>/documents/<id>/chunks (list a document's chunks), POST /api/v1/retrieval,
POST/DELETE /api/v1/chats, POST /api/v1/chats/<id>/sessions. Answers are RAGFlow's envelopes, codes and
messages, ids are uuid1 hex as RAGFlow's get_uuid() makes them, and a document's `run` is reported as
UNSTART/RUNNING/CANCEL/DONE/FAIL. The deletes keep RAGFlow's edges: on v0.24 an empty chat id list
deletes every chat of the tenant and `"ids": null` every dataset; chats are deleted by marking them
invalid (status "0").

What is fake: nothing is parsed, embedded, indexed or generated. A started document moves
RUNNING -> DONE over `parse_polls` reads of its status (progress rising, progress_msg lines as
rag/svr/task_executor.py writes them), its text cut into one chunk per sentence. It goes FAIL with
`fail_parsing_with` as its last progress_msg line when that is set or when its text contains
FAIL_MARKER, and stays RUNNING at progress 0 ("tasks are ahead in the queue", no task executor) with
`stall_parsing`. Retrieval scores chunks by the words they share with the question (term similarity,
a cosine as vector similarity, mixed 0.7/0.3 as RAGFlow's default vector_similarity_weight does, cut
at similarity_threshold 0.2). A chat "answers" with its best chunk and cites it; it runs no LLM.
`fail_chat_with` makes answers carry RAGFlow's "**ERROR**: ..." as a failed model call does.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from datetime import datetime
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qs, urlsplit

from .fake_ragflow import AUTHENTICATION_ERROR, envelope
from .fake_ragflow_providers import ARGUMENT_ERROR, DATA_ERROR, FakeRagflowProviders, ok, refused

PERMISSION_ERROR = 108
SERVER_ERROR = 500
RUN_NAMES = {"0": "UNSTART", "1": "RUNNING", "2": "CANCEL", "3": "DONE", "4": "FAIL"}
PROLOGUE = "Hi! I'm your assistant. What can I do for you?"
EMPTY_RESPONSE = "Sorry! No relevant content was found in the knowledge base!"
SDK_ROUTES = [
    ("POST", r"/api/v1/datasets", "create_dataset"),
    ("DELETE", r"/api/v1/datasets", "delete_datasets"),
    ("POST", r"/api/v1/datasets/(?P<dataset_id>[^/]+)/documents", "upload_document"),
    ("GET", r"/api/v1/datasets/(?P<dataset_id>[^/]+)/documents", "list_documents"),
    ("POST", r"/api/v1/datasets/(?P<dataset_id>[^/]+)/chunks", "start_parsing"),
    ("GET", r"/api/v1/datasets/(?P<dataset_id>[^/]+)/documents/(?P<document_id>[^/]+)/chunks", "list_chunks"),
    ("POST", r"/api/v1/retrieval", "retrieval"),
    ("POST", r"/api/v1/chats", "create_chat"),
    ("DELETE", r"/api/v1/chats", "delete_chats"),
    ("POST", r"/api/v1/chats/(?P<chat_id>[^/]+)/sessions", "create_session"),
    ("POST", r"/api/v1/chats/(?P<chat_id>[^/]+)/completions", "completion"),
]
V027_ROUTES = [("POST", r"/api/v1/chat/completions", "completion")]
UNAUTHORIZED = (401, envelope(401, None, "<Unauthorized '401: Unauthorized'>"), {})


def get_uuid() -> str:
    return uuid.uuid1().hex


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def sentences(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+", text) if part.strip()]


def clock_line(message: str) -> str:
    return "%s %s" % (datetime.now().strftime("%H:%M:%S"), message)


class EventStream(list):
    """Server-sent events: what a completion with "stream": true answers."""


class FakeRagflowDatasets(FakeRagflowProviders):
    FAIL_MARKER = "RAGSTACK-FAKE-PARSE-FAILURE"

    def __init__(self, generation: str = "v0.27", bind: tuple[str, int] | None = None):
        super().__init__(generation, bind)
        self.datasets: dict[str, dict] = {}
        self.documents: dict[str, dict] = {}
        self.chats: dict[str, dict] = {}
        self.conversations: dict[str, dict] = {}
        self.parse_polls = 3
        self.fail_parsing_with: str | None = None
        self.stall_parsing = False
        self.fail_chat_with: str | None = None
        self.lock = threading.Lock()

    # What tests look at.
    def datasets_of(self, tenant: str) -> list[dict]:
        return [row for row in self.datasets.values() if row["tenant_id"] == tenant]

    def live_chats(self, tenant: str) -> list[dict]:
        return [row for row in self.chats.values() if row["tenant_id"] == tenant and row["status"] == "1"]

    def sdk_writes(self) -> list[tuple[str, str]]:
        return [request for request in self.requests if request[0] in ("POST", "DELETE") and "/api/v1/" in request[1]]

    def _authenticate(self, authorization: str | None):
        """(tenant, None), or (None, the answer RAGFlow gives a request it does not let in)."""
        parts = (authorization or "").split()
        if self.generation == "v0.24":
            if not authorization:
                return None, (200, envelope(0, False, "`Authorization` can't be empty"), {})
            if len(parts) < 2:
                return None, (200, envelope(0, False, "Please check your authorization format."), {})
            tenant = self._token_tenant(parts[1])
            if tenant is None:
                message = "Authentication error: API key is invalid!"
                return None, (200, envelope(AUTHENTICATION_ERROR, False, message), {})
            return tenant, None
        user = self.current_user(authorization)
        return (user["tenant_id"], None) if user else (None, UNAUTHORIZED)

    def _token_tenant(self, token: str) -> str | None:
        rows = [row for row in self.tokens if row["token"] == token]
        return rows[0]["tenant_id"] if rows else None

    # Datasets.
    def _default_embedding(self, tenant):
        if self.generation == "v0.27":
            # "model@instance@provider" as v0.27 stores it; datasets show "model@provider".
            composite = self.defaults.get(tenant, {}).get("embedding", "")
            parts = composite.split("@")
            return "%s@%s" % (parts[0], parts[-1]) if composite else ""
        return self.tenant_fields.get(tenant, {}).get("embd_id", "")

    def create_dataset(self, tenant, body, _match):
        name = str(body.get("name") or "").strip()
        if not name:
            return refused("Field: <name> - Message: <String should have at least 1 character>", ARGUMENT_ERROR)
        if len(name.encode("utf-8")) > 128:
            return refused("Field: <name> - Message: <String should have at most 128 characters>", ARGUMENT_ERROR)
        millis = int(time.time() * 1000)
        dataset = {
            "id": get_uuid(),
            "tenant_id": tenant,
            "name": name,
            "avatar": None,
            "description": body.get("description"),
            "embedding_model": body.get("embedding_model") or self._default_embedding(tenant),
            "permission": body.get("permission", "me"),
            "chunk_method": body.get("chunk_method") or "naive",
            "parser_config": {"chunk_token_num": 512, "delimiter": "\n", "layout_recognize": "DeepDOC"},
            "language": "English",
            "document_count": 0,
            "chunk_count": 0,
            "token_num": 0,
            "similarity_threshold": 0.2,
            "vector_similarity_weight": 0.3,
            "pagerank": 0,
            "status": "1",
            "created_by": tenant,
            "create_time": millis,
            "update_time": millis,
        }
        self.datasets[dataset["id"]] = dataset
        return ok(dict(dataset))

    def _owned(self, tenant, dataset_id):
        dataset = self.datasets.get(dataset_id)
        return dataset if dataset is not None and dataset["tenant_id"] == tenant else None

    def delete_datasets(self, tenant, body, _match):
        if "ids" not in body and self.generation == "v0.24":
            return refused("Field: <ids> - Message: <Field required>", ARGUMENT_ERROR)
        ids = body.get("ids")
        if (ids is None and self.generation == "v0.24") or (not ids and body.get("delete_all") is True):
            ids = [row["id"] for row in self.datasets_of(tenant)]
        elif not ids:
            return (200, {"code": 0}, {}) if self.generation == "v0.24" else ok({"success_count": 0})
        unknown = [dataset_id for dataset_id in ids if self._owned(tenant, dataset_id) is None]
        if unknown:
            code = PERMISSION_ERROR if self.generation == "v0.24" else DATA_ERROR
            return refused("User '%s' lacks permission for datasets: '%s'" % (tenant, ", ".join(unknown)), code)
        for dataset_id in ids:
            del self.datasets[dataset_id]
            for document_id in [key for key, row in self.documents.items() if row["dataset_id"] == dataset_id]:
                del self.documents[document_id]
        if self.generation == "v0.24":
            return 200, {"code": 0}, {}
        return ok({"success_count": len(ids)})

    # Documents.
    def upload_document(self, tenant, body, match):
        dataset = self.datasets.get(match["dataset_id"])
        if dataset is None:
            if self.generation == "v0.24":
                message = "Can't find the dataset with ID %s!" % match["dataset_id"]
                return 200, {"code": SERVER_ERROR, "data": None, "message": message}, {}
            return refused("Can't find the dataset with ID %s!" % match["dataset_id"])
        if dataset["tenant_id"] != tenant:
            return refused("no authorization", AUTHENTICATION_ERROR)
        files = body.get("files", {}).get("file") if isinstance(body, dict) else None
        if not files:
            return refused("No file part!", ARGUMENT_ERROR)
        uploaded = []
        for filename, content in files:
            if not filename:
                return refused("No file selected!", ARGUMENT_ERROR)
            millis = int(time.time() * 1000)
            document = {
                "id": get_uuid(),
                "dataset_id": dataset["id"],
                "name": filename,
                "location": filename,
                "size": len(content),
                "type": "doc",
                "suffix": filename.rsplit(".", 1)[-1] if "." in filename else "",
                "chunk_method": dataset["chunk_method"],
                "parser_config": dict(dataset["parser_config"]),
                "created_by": tenant,
                "run": "0",
                "progress": 0.0,
                "progress_msg": "",
                "chunk_count": 0,
                "token_count": 0,
                "status": "1",
                "create_time": millis,
                "update_time": millis,
                "text": content.decode("utf-8", "replace"),
                "chunks": [],
                "reads": 0,
            }
            self.documents[document["id"]] = document
            dataset["document_count"] += 1
            uploaded.append(self._shown(document, run="UNSTART"))
        return ok(uploaded)

    @staticmethod
    def _shown(document, run=None):
        shown = {key: value for key, value in document.items() if key not in ("text", "chunks", "reads")}
        shown["run"] = run or RUN_NAMES[document["run"]]
        return shown

    def list_documents(self, tenant, _body, match):
        if self._owned(tenant, match["dataset_id"]) is None:
            return refused("You don't own the dataset %s. " % match["dataset_id"])
        wanted = match["query"].get("id")
        rows = [row for row in self.documents.values() if row["dataset_id"] == match["dataset_id"]]
        if wanted:
            rows = [row for row in rows if row["id"] == wanted]
            if not rows:
                return refused("You don't own the document %s." % wanted)
        for row in rows:
            self._advance(row)
        shown = [self._shown(row) for row in sorted(rows, key=lambda row: -row["create_time"])]
        return ok({"total": len(shown), "docs": shown})

    def list_chunks(self, tenant, _body, match):
        """A parsed document's chunks in order, {total, chunks, doc} as the SDK's Document.list_chunks reads them."""
        if self._owned(tenant, match["dataset_id"]) is None:
            return refused("You don't own the dataset %s." % match["dataset_id"])
        document = self.documents.get(match["document_id"])
        if document is None or document["dataset_id"] != match["dataset_id"]:
            return refused("You don't own the document %s." % match["document_id"])
        chunks = [
            {
                "id": chunk["id"],
                "content": chunk["content"],
                "document_id": document["id"],
                "docnm_kwd": document["name"],
                "important_keywords": [],
                "questions": [],
                "dataset_id": document["dataset_id"],
                "image_id": "",
                "available": True,
                "positions": [],
            }
            for chunk in document.get("chunks", [])
        ]
        return ok({"total": len(chunks), "chunks": chunks, "doc": self._shown(document)})

    def start_parsing(self, tenant, body, match):
        if self._owned(tenant, match["dataset_id"]) is None:
            return refused("You don't own the dataset %s." % match["dataset_id"])
        if not body.get("document_ids"):
            return refused("`document_ids` is required")
        not_found = []
        for document_id in body["document_ids"]:
            document = self.documents.get(document_id)
            if document is None or document["dataset_id"] != match["dataset_id"]:
                not_found.append(document_id)
                continue
            if document["run"] == "1" and 0 < document["progress"] < 1:
                return refused("Can't parse document that is currently being processed")
            document.update(run="1", progress=0.0, progress_msg="", chunk_count=0, token_count=0, chunks=[], reads=0)
        if not_found:
            return 200, {"code": DATA_ERROR, "message": "Documents not found: %s" % not_found}, {}
        return 200, {"code": 0}, {}

    def _advance(self, document):
        """One read of a started document's status moves its (fake) parsing task one stage on."""
        if document["run"] != "1":
            return
        document["reads"] += 1
        reads = document["reads"]
        if self.stall_parsing:
            document["progress_msg"] = clock_line("1 tasks are ahead in the queue...")
            return
        lines = [clock_line("Task has been received.")]
        document["progress"] = 0.1
        if reads >= 2:
            lines.append(clock_line("Page(1~100000001): Start to parse."))
            document["progress"] = 0.4
        failure = self.fail_parsing_with or (
            "Fake parser failure requested by %s" % self.FAIL_MARKER if self.FAIL_MARKER in document["text"] else None
        )
        if reads >= self.parse_polls and failure:
            lines.append(clock_line("Page(1~100000001): [ERROR]%s" % failure))
            document.update(run="4", progress=-1)
        elif reads >= self.parse_polls:
            chunks = sentences(document["text"])
            lines += [
                clock_line("Page(1~100000001): Finish parsing."),
                clock_line("Page(1~100000001): Generate %d chunks" % len(chunks)),
                clock_line("Page(1~100000001): Embedding chunks (0.01s)"),
                clock_line("Page(1~100000001): Indexing done (0.00s). Task done (0.02s)"),
            ]
            document["chunks"] = [
                {"id": uuid.uuid4().hex[:16], "content": text, "document_id": document["id"]} for text in chunks
            ]
            tokens = len(words(document["text"]))
            document.update(run="3", progress=1.0, chunk_count=len(chunks), token_count=tokens)
            dataset = self.datasets[document["dataset_id"]]
            dataset["chunk_count"] += len(chunks)
            dataset["token_num"] += tokens
        document["progress_msg"] = "\n".join(lines)

    # Retrieval.
    def _rank(self, question, dataset_ids, document_ids=None, threshold=0.2, vector_weight=0.3):
        asked = set(words(question))
        ranked = []
        for document in self.documents.values():
            if document["dataset_id"] not in dataset_ids or (document_ids and document["id"] not in document_ids):
                continue
            for chunk in document["chunks"]:
                have = set(words(chunk["content"]))
                shared = len(asked & have)
                term = shared / len(asked) if asked else 0.0
                vector = shared / math.sqrt(len(asked) * len(have)) if asked and have else 0.0
                similarity = (1 - vector_weight) * term + vector_weight * vector
                if similarity >= threshold:
                    ranked.append((similarity, vector, term, chunk, document))
        ranked.sort(key=lambda item: -item[0])
        return ranked

    @staticmethod
    def _chunk_row(similarity, vector, term, chunk, document):
        return {
            "id": chunk["id"],
            "content": chunk["content"],
            "content_ltks": " ".join(words(chunk["content"])),
            "document_id": document["id"],
            "document_keyword": document["name"],
            "dataset_id": document["dataset_id"],
            "highlight": chunk["content"],
            "image_id": "",
            "important_keywords": [],
            "questions": [],
            "positions": [],
            "doc_type_kwd": "",
            "similarity": round(similarity, 6),
            "vector_similarity": round(vector, 6),
            "term_similarity": round(term, 6),
        }

    def _retrieval_refusals(self, tenant, body):
        """RAGFlow's messages for a retrieval request it refuses (chunk_api.py retrieval_test), in its order;
        the caller takes the first, so a check never runs on what an earlier one refused."""
        dataset_ids = body.get("dataset_ids")
        if not dataset_ids:
            yield "`dataset_ids` is required."
        if not isinstance(dataset_ids, list):
            yield "`dataset_ids` should be a list"
        for dataset_id in dataset_ids:
            if self._owned(tenant, dataset_id) is None:
                yield "You don't own the dataset %s." % dataset_id
        if "question" not in body:
            yield "`question` is required."
        document_ids = body.get("document_ids") or []
        if not isinstance(document_ids, list):
            yield "`documents` should be a list"
        for document_id in document_ids:
            document = self.documents.get(document_id)
            if document is None or document["dataset_id"] not in dataset_ids:
                yield "The datasets don't own the document %s" % document_id

    def retrieval(self, tenant, body, _match):
        refusal = next(self._retrieval_refusals(tenant, body), None)
        if refusal:
            return refused(refusal)
        dataset_ids, document_ids = body["dataset_ids"], body.get("document_ids") or []
        question = str(body["question"]).strip()
        if not question:
            return ok({"total": 0, "chunks": [], "doc_aggs": {}})
        if not any(self.datasets[dataset_id]["chunk_count"] for dataset_id in dataset_ids):
            # No index for the tenant yet: the document engine's "not_found".
            return 200, {"code": DATA_ERROR, "message": "No chunk found! Check the chunk status please!"}, {}
        ranked = self._rank(
            question,
            dataset_ids,
            document_ids,
            float(body.get("similarity_threshold", 0.2)),
            float(body.get("vector_similarity_weight", 0.3)),
        )[: int(body.get("top_k", 1024))]
        rows = [self._chunk_row(*item) for item in ranked]
        aggs: dict[str, dict] = {}
        for row in rows:
            aggs.setdefault(row["document_keyword"], {"doc_id": row["document_id"], "count": 0})["count"] += 1
        doc_aggs = [{"doc_name": name, "doc_id": agg["doc_id"], "count": agg["count"]} for name, agg in aggs.items()]
        return ok({"total": len(rows), "chunks": rows[: int(body.get("page_size", 30))], "doc_aggs": doc_aggs})

    # Chats.
    def create_chat(self, tenant, body, _match):
        name = str(body.get("name") or "").strip()
        dataset_ids = [dataset_id for dataset_id in body.get("dataset_ids") or [] if dataset_id]
        for dataset_id in dataset_ids:
            dataset = self._owned(tenant, dataset_id)
            if dataset is None:
                return refused("You don't own the dataset %s" % dataset_id)
            if dataset["chunk_count"] == 0:
                return refused("The dataset %s doesn't own parsed file" % dataset_id)
        if not name:
            return refused("`name` is required." if self.generation == "v0.24" else "`name` is required")
        if any(row["name"] == name for row in self.live_chats(tenant)):
            duplicate = "Duplicated chat name in creating chat."
            return refused(duplicate if self.generation == "v0.24" else "duplicated chat name in creating chat")
        chat = {
            "id": get_uuid(),
            "tenant_id": tenant,
            "name": name,
            "dataset_ids": dataset_ids,
            "description": "A helpful Assistant",
            "prompt": {"prologue": PROLOGUE, "empty_response": EMPTY_RESPONSE, "similarity_threshold": 0.2},
            "status": "1",
            "create_time": int(time.time() * 1000),
        }
        self.chats[chat["id"]] = chat
        return ok(dict(chat))

    def delete_chats(self, tenant, body, _match):
        ids = body.get("ids")
        if not ids:
            if self.generation == "v0.24" or body.get("delete_all") is True:
                ids = [row["id"] for row in self.live_chats(tenant)]
            else:
                return ok({})
        errors, deleted = [], 0
        for chat_id in ids:
            chat = self.chats.get(chat_id)
            if chat is None or chat["tenant_id"] != tenant or chat["status"] != "1":
                name = "Assistant" if self.generation == "v0.24" else "Chat"
                errors.append("%s(%s) not found." % (name, chat_id))
                continue
            chat["status"] = "0"
            deleted += 1
        if errors and deleted:
            message = "Partially deleted %d chats with %d errors" % (deleted, len(errors))
            return ok({"success_count": deleted, "errors": errors}, message)
        if errors:
            return refused("; ".join(errors))
        if self.generation == "v0.24":
            return 200, {"code": 0}, {}
        return ok({"success_count": deleted})

    def _live_chat(self, tenant, chat_id):
        chat = self.chats.get(chat_id)
        return chat if chat is not None and chat["tenant_id"] == tenant and chat["status"] == "1" else None

    def _not_owned_chat(self, v024_message):
        if self.generation == "v0.24":
            return refused(v024_message)
        return 200, envelope(AUTHENTICATION_ERROR, False, "no authorization"), {}

    def _new_session(self, chat, name="New session"):
        session = {
            "id": get_uuid(),
            "chat_id": chat["id"],
            "name": name,
            "messages": [{"role": "assistant", "content": PROLOGUE}],
            "create_time": int(time.time() * 1000),
        }
        self.conversations[session["id"]] = session
        return session

    def create_session(self, tenant, body, match):
        chat = self._live_chat(tenant, match["chat_id"])
        if chat is None:
            return self._not_owned_chat("You do not own the assistant.")
        name = body.get("name", "New session")
        if not isinstance(name, str) or not name.strip():
            return refused("`name` can not be empty." if self.generation == "v0.24" else "`name` can not be empty")
        return ok(dict(self._new_session(chat, name.strip()[:255])))

    def _completion_request(self, body, match):
        """(chat_id, question, refusal): v0.27 takes chat_id in the body (or the deprecated path) and
        messages or question; v0.24 takes the path's chat_id and blanks the question without a session."""
        chat_id = match.get("chat_id") or ""
        if self.generation == "v0.24":
            return chat_id, body.get("question", "") if body.get("session_id") else "", None
        chat_id = body.get("chat_id") or chat_id
        if body.get("messages") is None and body.get("question") is None:
            return chat_id, "", refused("required argument are missing: messages", ARGUMENT_ERROR)
        question = body.get("question")
        if question is None:
            question = body["messages"][-1].get("content", "")
        if body.get("session_id") and not chat_id:
            return chat_id, question, refused("`chat_id` is required when `session_id` is provided.")
        return chat_id, question, None

    def _session_refusal(self, session, session_id, chat_id):
        if session is not None and session["chat_id"] == chat_id:
            return None
        if self.generation == "v0.24":
            return refused("You don't own the session %s" % session_id)
        return refused("Session not found!" if session is None else "Session does not belong to this chat!")

    def completion(self, tenant, body, match):
        chat_id, question, refusal = self._completion_request(body, match)
        chat = self._live_chat(tenant, chat_id) if chat_id else None
        if refusal is None and chat_id and chat is None:
            refusal = self._not_owned_chat("You don't own the chat %s" % chat_id)
        session_id = body.get("session_id")
        session = self.conversations.get(session_id) if session_id else None
        if refusal is None and session_id:
            refusal = self._session_refusal(session, session_id, chat_id)
        if refusal:
            return refusal
        if chat is not None and session is None:
            session = self._new_session(chat)
            if self.generation == "v0.24":
                return self._answered(body, chat_id, {"answer": PROLOGUE, "reference": {}, "session_id": session["id"]})
        answer = self._answer_from_chunks(chat, question)
        answer["session_id"] = session["id"] if session is not None else ""
        if session is not None:
            session["messages"] += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer["answer"]},
            ]
        return self._answered(body, chat_id, answer)

    def _answer_from_chunks(self, chat, question):
        """The fake's "LLM": the best chunk of the chat's datasets, cited; no model runs."""
        if self.fail_chat_with:
            return {"answer": "**ERROR**: %s" % self.fail_chat_with, "reference": {}}
        ranked = self._rank(question, chat["dataset_ids"]) if chat is not None else []
        if not ranked:
            return {"answer": EMPTY_RESPONSE if chat is not None else "", "reference": {}}
        similarity, vector, term, chunk, document = ranked[0]
        reference = {
            "chunks": [
                {
                    "id": chunk["id"],
                    "content": chunk["content"],
                    "document_id": document["id"],
                    "document_name": document["name"],
                    "dataset_id": document["dataset_id"],
                    "image_id": "",
                    "positions": [],
                    "url": None,
                    "similarity": round(similarity, 6),
                    "vector_similarity": round(vector, 6),
                    "term_similarity": round(term, 6),
                    "doc_type": "",
                }
            ],
            "doc_aggs": [{"doc_name": document["name"], "doc_id": document["id"], "count": 1}],
        }
        return {"answer": "According to %s: %s [ID:0]" % (document["name"], chunk["content"]), "reference": reference}

    def _answered(self, body, chat_id, answer):
        answer.update(audio_binary=None, id=str(uuid.uuid4()), prompt="", created_at=time.time(), final=True)
        if self.generation == "v0.27" and chat_id:
            answer["chat_id"] = chat_id
        if body.get("stream", True):
            return (
                200,
                EventStream([{"code": 0, "message": "", "data": answer}, {"code": 0, "message": "", "data": True}]),
                {},
            )
        return ok(answer, "success")

    # HTTP.
    def _sdk_route(self, method: str, target: str):
        parts = urlsplit(target)
        routes = SDK_ROUTES + (V027_ROUTES if self.generation == "v0.27" else [])
        for route_method, pattern, endpoint in routes:
            found = re.fullmatch(pattern, parts.path)
            if route_method == method and found:
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                return endpoint, {**found.groupdict(), "query": query}
        return None

    @staticmethod
    def _body(content_type: str, raw: bytes):
        """A JSON body as a dict; a multipart body as {"form": {name: text}, "files": {name: [(filename, bytes)]}}."""
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
            )
            form: dict[str, str] = {}
            files: dict[str, list] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                filename = part.get_param("filename", header="content-disposition")
                content = part.get_payload(decode=True) or b""
                if filename is None:
                    form[name] = content.decode("utf-8", "replace")
                else:
                    files.setdefault(name, []).append((filename, content))
            return {"form": form, "files": files}
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _handler_class(self):
        fake = self
        base = super()._handler_class()

        class Handler(base):
            def _events(self, status, events):
                raw = b"".join(b"data:" + json.dumps(event).encode() + b"\n\n" for event in events)
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _dispatch(self):
                route = fake._sdk_route(self.command, self.path)
                if route is None:
                    return super()._dispatch()
                fake.requests.append((self.command, self.path))
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                tenant, refusal = fake._authenticate(self.headers.get("Authorization"))
                if refusal:
                    return self._answer(*refusal)
                endpoint, match = route
                body = fake._body(self.headers.get("Content-Type", ""), raw)
                with fake.lock:
                    status, answer, headers = getattr(fake, endpoint)(tenant, body, match)
                if isinstance(answer, EventStream):
                    return self._events(status, answer)
                return self._answer(status, answer, headers)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

        return Handler
