from django.urls import path

from transcriptions import views

urlpatterns = [
    path("jobs", views.create_job, name="create-job"),
    path("jobs/<str:job_id>", views.job_detail, name="job-detail"),
    path("callbacks/stt", views.stt_callback, name="stt-callback"),
]
