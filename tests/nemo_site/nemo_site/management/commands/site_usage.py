"""Use a tool in NEMO: a tool, then USES usage events, each started and then ended. The
plugin's own signal handlers queue the events (plugin 1.x: the Redis list; 2.x: the table)."""

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone


class Command(BaseCommand):
    help = "Create the tool `Probe SEM` (once) and USES started-then-ended usage events on it."

    def add_arguments(self, parser):
        parser.add_argument("--uses", type=int, required=True)

    def handle(self, *args, **options):
        from NEMO.models import Account, Project, Tool, UsageEvent, User

        admin = User.objects.get(username="admin")
        tool, _ = Tool.objects.get_or_create(
            name="Probe SEM",
            defaults=dict(_category="Imaging", _operational=True, _primary_owner=admin),
        )
        account, _ = Account.objects.get_or_create(name="Lab")
        project, _ = Project.objects.get_or_create(
            name="Probe", defaults=dict(account=account, application_identifier="P-1")
        )
        start = timezone.now()
        for i in range(options["uses"]):
            use = UsageEvent.objects.create(
                user=admin, operator=admin, tool=tool, project=project,
                start=start + timedelta(minutes=i),
            )
            use.end = start + timedelta(minutes=i, seconds=30)
            use.save()
        self.stdout.write(f"tool {tool.id}: {options['uses']} uses")
