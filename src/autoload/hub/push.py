"""`push_to_hub`, shared by models, configs and tokenizers (each class sets `push_to_hub = push.push_to_hub`):
save to a temporary folder with the object's own `save_pretrained`, then one `upload_folder` commit. The signature
and default commit titles are transformers' (5.x), plus `endpoint`. Importing this module is cheap."""

from __future__ import annotations

import inspect
import os
import tempfile

from . import settings


def default_title(obj) -> str:
    """transformers' default commit title, picked by class-name substring."""
    name = type(obj).__name__
    for part, title in (("Model", "Upload model"), ("Config", "Upload config"), ("Tokenizer", "Upload tokenizer"),
                        ("FeatureExtractor", "Upload feature extractor"), ("Processor", "Upload processor")):
        if part in name:
            return title
    return f"Upload {name}"


def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, commit_description: str | None = None,
                private: bool | None = None, token: str | bool | None = None, revision: str | None = None,
                create_pr: bool = False, max_shard_size: int | str | None = None, tags: list[str] | None = None,
                endpoint: str | None = None, hub: str | None = None):
    """Save with `save_pretrained` into a temporary folder and upload it to `repo_id` in one commit (creating
    the repo if needed: a bare name goes to the token owner's namespace). Files the hub already holds are not
    sent again. A model gets a short model card (README.md) when the repo has none. `hub="modelscope"`: to a
    ModelScope model (a `configuration.json` is added when missing, no card). Returns the CommitInfo (`.oid` is
    the commit id, `.pr_url` the pull request's URL with `create_pr=True`)."""
    from . import upload
    from .errors import HubError
    url = upload.create_repo(repo_id, private=private, exist_ok=True, token=token, endpoint=endpoint, hub=hub)
    with tempfile.TemporaryDirectory(prefix="autoload-push-") as folder:
        kwargs = {}
        if max_shard_size is not None and "max_shard_size" in inspect.signature(self.save_pretrained).parameters:
            kwargs["max_shard_size"] = max_shard_size
        self.save_pretrained(folder, **kwargs)
        modelscope = settings.which_hub(hub, "model") == "modelscope"
        if modelscope and not os.path.exists(os.path.join(folder, "configuration.json")):
            with open(os.path.join(folder, "configuration.json"), "w", encoding="utf-8") as f:
                f.write('{"framework": "pytorch"}\n')  # ModelScope's tools expect one
        if hasattr(self, "state_dict") and not modelscope and not os.path.exists(os.path.join(folder, "README.md")):
            try:
                remote = upload._list_remote(upload._Repo.make(url.repo_id, "model", endpoint, token), "main")
            except HubError:
                remote = []
            if "README.md" not in remote:
                with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
                    f.write(model_card(url.repo_id, tags))
        return upload.upload_folder(url.repo_id, folder, commit_message=commit_message or default_title(self),
                                    commit_description=commit_description, revision=revision, create_pr=create_pr,
                                    token=token, endpoint=endpoint, hub=hub)


def model_card(repo_id: str, tags: list[str] | None) -> str:
    tag_lines = "".join(f"- {t}\n" for t in tags or [])
    return (f"---\nlibrary_name: transformers\n{'tags:' + chr(10) + tag_lines if tag_lines else ''}---\n\n"
            f"# {repo_id}\n\nPushed with autoload's `push_to_hub`. Load it with "
            f"`autoload.AutoModel.from_pretrained(\"{repo_id}\")` or transformers' "
            f"`AutoModel.from_pretrained(\"{repo_id}\")`.\n")
